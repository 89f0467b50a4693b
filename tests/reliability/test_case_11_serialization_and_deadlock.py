"""Reliability case 11, serialization failures and deadlocks: PostgreSQL itself raises
SQLSTATE 40001 (serialization_failure) and 40P01 (deadlock_detected) inside appends
(a trigger on the event table, firing on every few writes), while several processes
post payments on hot accounts. Every failed transaction is retried whole, within a
bound; the outcome equals a serial run of the same commands: each key applied once,
no lost update, rules kept, sums zero."""

from __future__ import annotations

import multiprocessing
import random
from decimal import Decimal

import psycopg
import pytest

from ledger import Ledger
from ledger.commands import LegInput, PostEntry
from ledger.projections.audit import audit
from tests.conftest import require_postgres, reset_postgres

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WALLETS = 6
FAULTS = """
DROP SEQUENCE IF EXISTS ledger_test_faults;
CREATE SEQUENCE ledger_test_faults;  -- nextval survives the rollback of the failed append
CREATE OR REPLACE FUNCTION inject_fault() RETURNS trigger AS $$
DECLARE k bigint;
BEGIN
  k := nextval('ledger_test_faults');
  IF k % 7 = 3 THEN
    RAISE EXCEPTION 'injected serialization failure' USING ERRCODE = '40001';
  ELSIF k % 7 = 5 THEN
    RAISE EXCEPTION 'injected deadlock' USING ERRCODE = '40P01';
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS inject_fault ON stored_events;
CREATE TRIGGER inject_fault AFTER INSERT ON stored_events
  FOR EACH STATEMENT EXECUTE FUNCTION inject_fault();
"""


def commands(worker: int, n: int) -> list[PostEntry]:
    rng = random.Random(worker)
    out = []
    for i in range(n):
        a, b = rng.sample(range(WALLETS), 2)
        value = Decimal(rng.randrange(1, 3000)).scaleb(-2)
        out.append(
            PostEntry(
                key=f"w{worker}-{i}",
                legs=(
                    LegInput(account=f"w{a}", amount=value, asset="USD"),
                    LegInput(account=f"w{b}", amount=-value, asset="USD"),
                ),
            )
        )
    return out


def worker_main(url: str, worker: int, n: int, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    with Ledger.open(url, create_schema=False) as books:
        statuses = []
        for start in range(0, n, 5):
            outcomes = books.submit_many(commands(worker, n)[start : start + 5])
            statuses += [(o.key, o.status, o.code) for o in outcomes]
        results.put(statuses)


def test_injected_40001_and_40P01_are_retried_and_equal_a_serial_run() -> None:
    url = require_postgres()
    Ledger.open(url).close()
    reset_postgres(url)
    with Ledger.open(url) as books:
        books.open_account("bank", "USD", normal="debit")
        for w in range(WALLETS):
            books.open_account(f"w{w}", "USD", min_balance="0")
            books.transfer(f"fund-{w}", debit="bank", credit=f"w{w}", amount="50", asset="USD")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(FAULTS)
    try:
        ctx = multiprocessing.get_context("spawn")
        results: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
        procs = [ctx.Process(target=worker_main, args=(url, w, 120, results)) for w in range(3)]
        for p in procs:
            p.start()
        statuses = [s for _ in procs for s in results.get(timeout=300)]
        for p in procs:
            p.join()
            assert p.exitcode == 0
        with psycopg.connect(url, autocommit=True) as conn:
            fired = conn.execute("SELECT last_value FROM ledger_test_faults").fetchone()
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TRIGGER IF EXISTS inject_fault ON stored_events")
    assert fired is not None and fired[0] >= 7 * 10  # dozens of injected failures
    assert all(status in ("applied", "rejected") for _, status, _ in statuses)
    # a serial run of the applied commands, in the order the log recorded them
    with Ledger.open(url, create_schema=False) as books:
        applied = {key for key, status, _ in statuses if status == "applied"}
        model = {f"w{w}": 5000 for w in range(WALLETS)}
        for n in _entries_in_log_order(books):
            if n["key"] in applied:
                for account, _, amount in n["legs"]:
                    model[account] -= int(amount)  # credit-normal: a debit lowers it
                    assert model[account] >= 0
        for w in range(WALLETS):
            assert books.balance(f"w{w}").posted == Decimal(model[f"w{w}"]).scaleb(-2)
        keys = [n["key"] for n in _entries_in_log_order(books)]
        assert len(keys) == len(set(keys))  # each key applied once
        assert set(keys) >= applied
        assert audit(books.store).clean


def _entries_in_log_order(books: Ledger) -> list[dict]:  # type: ignore[type-arg]
    from ledger.events import TOPIC_ENTRY, LogEvent

    out, position = [], 0
    while batch := books.store.read_log(position, 5000):
        out += [LogEvent.from_notification(n).body for n in batch if n.topic == TOPIC_ENTRY]
        position = batch[-1].id
    return [b for b in out if not b["key"].startswith("fund-")]

"""A freeze racing payments from several processes on the real PostgreSQL: once the
freeze commits, no payment out of the account lands (every writer's cached state is
refused by the append's version guard and decided again on the frozen state)."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.events import LogEvent
from ledger.projections.audit import audit
from tests.conftest import require_postgres, reset_postgres

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PROCESSES = 3
THREADS = 4
PAYEES = 8


def writer(url: str, worker: int, stop_path: str) -> None:
    """Pay 0.01 out of the hot wallet from several threads until told to stop; write
    how many applied and how many were refused as frozen."""
    counts = {"applied": 0, "account_frozen": 0}
    lock = threading.Lock()
    with Ledger.open(url, create_schema=False) as books:

        def loop(thread: int) -> None:
            i = 0
            while not Path(stop_path).exists():
                key = f"w{worker}-{thread}-{i}"
                payee = f"v{(worker + thread + i) % PAYEES}"
                outcome = books.submit(
                    {
                        "kind": "post_entry",
                        "key": key,
                        "legs": [
                            {"account": "hot", "amount": "0.01", "asset": "USD"},
                            {"account": payee, "amount": "-0.01", "asset": "USD"},
                        ],
                    }
                )
                with lock:
                    counts[outcome.code or outcome.status] += 1
                i += 1

        threads = [threading.Thread(target=loop, args=(t,)) for t in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    Path(f"{stop_path}.{worker}.json").write_text(json.dumps(counts))


def test_no_payment_lands_after_the_freeze_commits(tmp_path: Path) -> None:
    url = require_postgres()
    Ledger.open(url).close()
    reset_postgres(url)
    with Ledger.open(url) as books:
        books.open_account("bank", "USD", normal="debit")
        books.open_account("hot", "USD", min_balance="0")
        for p in range(PAYEES):
            books.open_account(f"v{p}", "USD")
        books.transfer("fund", debit="bank", credit="hot", amount="100000", asset="USD")
    stop = tmp_path / "stop"
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=writer, args=(url, w, str(stop))) for w in range(PROCESSES)]
    for w in workers:
        w.start()
    try:
        with Ledger.open(url) as books:
            deadline = time.monotonic() + 60
            while books.balance("hot").version < 30:  # the writers are under way
                assert time.monotonic() < deadline
                time.sleep(0.05)
            time.sleep(0.3)
            assert books.freeze("freeze", "hot", mode="debits").ok
            frozen_at = books.balance("hot").version
            time.sleep(1.0)  # the writers keep trying
    finally:
        stop.touch()
        for w in workers:
            w.join(timeout=60)
    assert all(w.exitcode == 0 for w in workers)
    with Ledger.open(url) as books:
        freeze_position = None
        debits_after = debits_before = 0
        position = 0
        while batch := books.store.read_log(position, 1000):
            for n in batch:
                e = LogEvent.from_notification(n)
                if e.body.get("change", {}).get("kind") == "freeze_account":
                    freeze_position = e.position
                elif e.topic == "ledger:Entry:1":
                    debit = any(leg.account == "hot" and leg.amount > 0 for leg in e.legs())
                    if freeze_position is None:
                        debits_before += debit
                    else:
                        debits_after += debit
            position = batch[-1].id
        assert freeze_position is not None
        assert debits_after == 0
        state = books.balance("hot")
        assert (state.status, state.version) == ("frozen", frozen_at)
        counts = [json.loads((tmp_path / f"stop.{w}.json").read_text()) for w in range(PROCESSES)]
        applied = sum(c["applied"] for c in counts)
        assert sum(c["account_frozen"] for c in counts) > 0  # they did race the freeze
        assert debits_before == applied  # every payment that returned success is there
        report = audit(books.store)
        assert report.clean, report.findings

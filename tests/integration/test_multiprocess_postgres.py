"""Several processes post payments against the real PostgreSQL at once, with about 10%
of idempotency keys shared between processes and a hot account in every payment.
Afterwards: no key applied twice, no update lost, every currency sums to zero, no
balance rule broken, every account's versions contiguous."""

from __future__ import annotations

import json
import multiprocessing
import random
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from ledger import Ledger
from ledger.commands import LegInput, PostEntry
from tests.conftest import require_postgres, reset_postgres

PROCESSES = 4
PAYMENTS = 2000
USERS = 200
HOT = 4
FUNDING = Decimal("50.00")

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def payment(rng: random.Random, key: str) -> PostEntry:
    """A payment between two users with a fee to one of the hot accounts."""
    payer, payee = rng.sample(range(USERS), 2)
    amount = Decimal(rng.randrange(1, 1500)).scaleb(-2)
    fee = Decimal(rng.randrange(1, 50)).scaleb(-2)
    return PostEntry(
        key=key,
        legs=(
            LegInput(account=f"u:{payer}", amount=amount + fee, asset="USD"),
            LegInput(account=f"u:{payee}", amount=-amount, asset="USD"),
            LegInput(account=f"hot:{rng.randrange(HOT)}", amount=-fee, asset="USD"),
        ),
    )


def requests_of(worker: int) -> list[PostEntry]:
    """The worker's payments; every tenth key (and request) is shared by all workers."""
    own = random.Random(1000 + worker)
    out = []
    for j in range(PAYMENTS):
        if j % 10 == 0:
            out.append(payment(random.Random(j), f"shared-{j}"))
        else:
            out.append(payment(own, f"w{worker}-{j}"))
    return out


def worker_main(url: str, worker: int, out_path: str) -> None:
    requests = requests_of(worker)
    results = []
    with Ledger.open(url, create_schema=False) as books:
        if worker % 2 == 0:
            outcomes = [books.submit(cmd) for cmd in requests]
        else:
            outcomes = []
            for start in range(0, len(requests), 25):
                outcomes.extend(books.submit_many(requests[start : start + 25]))
    for cmd, outcome in zip(requests, outcomes, strict=True):
        results.append(
            {
                "key": cmd.key,
                "status": outcome.status,
                "code": outcome.code,
                "entry": str(outcome.entry_id),
            }
        )
    Path(out_path).write_text(json.dumps(results))


def test_case_02_no_negatives_under_contention_each_key_once_nothing_lost(tmp_path: Path) -> None:
    url = require_postgres()
    Ledger.open(url).close()
    reset_postgres(url)
    with Ledger.open(url) as books:
        books.open_account("bank", "USD", normal="debit")
        for h in range(HOT):
            books.open_account(f"hot:{h}", "USD")
        for u in range(USERS):
            books.open_account(f"u:{u}", "USD", min_balance="0")
        books.submit_many(
            [
                PostEntry(
                    key=f"fund-{u}",
                    legs=(
                        LegInput(account="bank", amount=FUNDING, asset="USD"),
                        LegInput(account=f"u:{u}", amount=-FUNDING, asset="USD"),
                    ),
                )
                for u in range(USERS)
            ]
        )

    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=worker_main, args=(url, w, str(tmp_path / f"w{w}.json")))
        for w in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
        assert p.exitcode == 0

    outcomes: dict[str, list[dict[str, str]]] = defaultdict(list)
    for w in range(PROCESSES):
        for row in json.loads((tmp_path / f"w{w}.json").read_text()):
            outcomes[row["key"]].append(row)
    statuses = {row["status"] for rows in outcomes.values() for row in rows}
    assert statuses <= {"applied", "rejected"}, statuses
    # shared keys: every process saw the same outcome
    for key, rows in outcomes.items():
        assert len({(r["status"], r["code"], r["entry"]) for r in rows}) == 1, (key, rows)
        if key.startswith("shared-"):
            assert len(rows) == PROCESSES
    applied = {key for key, rows in outcomes.items() if rows[0]["status"] == "applied"}
    rejected = {key for key, rows in outcomes.items() if rows[0]["status"] == "rejected"}
    assert applied and rejected, "the workload should both apply and reject payments"

    # expected balances from the requests that were applied, each exactly once
    expected: dict[str, Decimal] = defaultdict(Decimal)
    for u in range(USERS):
        expected[f"u:{u}"] += FUNDING
        expected["bank"] += FUNDING
    all_requests = {cmd.key: cmd for w in range(PROCESSES) for cmd in requests_of(w)}
    for key in applied:
        for leg in all_requests[key].legs:
            sign = 1 if leg.account == "bank" else -1  # bank is debit-normal
            expected[leg.account] += sign * leg.amount

    with Ledger.open(url) as books:
        names = ["bank"] + [f"hot:{h}" for h in range(HOT)] + [f"u:{u}" for u in range(USERS)]
        for name in names:
            balance = books.balance(name)
            assert balance.posted == expected[name], name
            if name.startswith("u:"):
                assert balance.available >= 0
        total = sum((expected[n] for n in names if n != "bank"), Decimal(0))
        assert total == expected["bank"]  # debits equal credits across the ledger

    with psycopg.connect(url) as conn:
        entry_keys = conn.execute(
            "SELECT convert_from(state, 'UTF8')::json->>'key' FROM stored_events"
            " WHERE topic = 'ledger:Entry:1'"
        ).fetchall()
        keys = [k for (k,) in entry_keys]
        assert len(keys) == len(set(keys)), "a key was applied twice"
        assert set(keys) - {f"fund-{u}" for u in range(USERS)} == applied
        gaps = conn.execute(
            "SELECT originator_id FROM stored_events GROUP BY originator_id"
            " HAVING max(originator_version) <> count(*)"
        ).fetchall()
        assert gaps == []

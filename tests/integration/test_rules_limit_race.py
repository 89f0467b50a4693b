"""A wallet with a credit limit, spent from several processes (payments and holds,
several threads each) while another writer moves the limit up and down, on the real
PostgreSQL: no version of the wallet is ever beyond the limit in force at that
version (the audit replays every one), every applied payment or hold is counted
exactly once, every refusal is the documented ``balance_rule_violated``, and the
limit can be reached exactly (available equal to the minimum) but not passed."""

from __future__ import annotations

import json
import multiprocessing
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ledger import Ledger
from ledger.errors import BalanceRuleViolated
from ledger.projections.audit import audit
from tests.conftest import require_postgres, reset_postgres

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PROCESSES = 3
THREADS = 3
ATTEMPTS = 16  # per thread: 144 units asked for, at most 30 available
FUNDING = Decimal("20.00")
LIMITS = ("-10", "-4")  # the credit limit, loosened and tightened during the race


def _legs(amount: str) -> list[dict[str, Any]]:
    return [
        {"account": "hot", "amount": amount, "asset": "USD"},
        {"account": "shop", "amount": f"-{amount}", "asset": "USD"},
    ]


def spender(url: str, worker: int, out_path: str) -> None:
    """Spend 1.00 per attempt out of the hot wallet, as a payment or a hold in turn;
    write each attempt's outcome."""
    outcomes: list[dict[str, Any]] = []
    lock = threading.Lock()
    with Ledger.open(url, create_schema=False) as books:

        def loop(thread: int) -> None:
            for i in range(ATTEMPTS):
                kind = "post_entry" if (thread + i) % 2 == 0 else "place_hold"
                key = f"w{worker}-{thread}-{i}"
                outcome = books.submit({"kind": kind, "key": key, "legs": _legs("1.00")})
                with lock:
                    outcomes.append({"key": key, "status": outcome.status, "code": outcome.code})

        threads = [threading.Thread(target=loop, args=(t,)) for t in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    Path(out_path).write_text(json.dumps(outcomes))


def test_credit_limit_holds_while_spenders_and_limit_changes_race(tmp_path: Path) -> None:
    url = require_postgres()
    Ledger.open(url).close()
    reset_postgres(url)
    with Ledger.open(url) as books:
        books.open_account("bank", "USD", normal="debit")
        books.open_account("shop", "USD")
        books.open_account("hot", "USD", min_balance=LIMITS[0])
        books.transfer("fund", debit="bank", credit="hot", amount=FUNDING, asset="USD")

    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=spender, args=(url, w, str(tmp_path / f"w{w}.json")))
        for w in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    changes: dict[str, int] = {}
    try:
        with Ledger.open(url) as books:
            i = 0
            while any(p.is_alive() for p in procs):
                outcome = books.submit(
                    {
                        "kind": "change_limits",
                        "key": f"limit-{i}",
                        "account": "hot",
                        "min_balance": LIMITS[i % 2],
                    }
                )
                changes[outcome.code or outcome.status] = (
                    changes.get(outcome.code or outcome.status, 0) + 1
                )
                i += 1
    finally:
        for p in procs:
            p.join(timeout=300)
    assert all(p.exitcode == 0 for p in procs)
    assert set(changes) <= {"applied", "balance_rule_violated"}, changes

    rows = [r for w in range(PROCESSES) for r in json.loads((tmp_path / f"w{w}.json").read_text())]
    assert len(rows) == PROCESSES * THREADS * ATTEMPTS
    assert {(r["status"], r["code"]) for r in rows} <= {
        ("applied", None),
        ("rejected", "balance_rule_violated"),
    }
    applied = sum(r["status"] == "applied" for r in rows)
    with Ledger.open(url) as books:
        state = books.balance("hot")
        # each applied attempt took exactly 1.00 (posted or reserved), none twice
        assert state.available == FUNDING - applied
        assert state.min_balance is not None and state.available >= state.min_balance
        report = audit(books.store)
        assert report.clean, report.findings  # the rule in force held at every version

        # Loosest limit again: the wallet can be spent down to it exactly, not beyond.
        books.change_limits("limit-final", "hot", min_balance=LIMITS[0])
        room = books.balance("hot").available - Decimal(LIMITS[0])
        for n in range(int(room)):
            assert books.post(f"drain-{n}", _legs("1.00")).ok
        assert books.balance("hot").available == Decimal(LIMITS[0])
        with pytest.raises(BalanceRuleViolated):
            books.post("drain-over", _legs("0.01"))
        assert audit(books.store).clean

"""Reliability case 6, idempotent replay: the same key and request sent twice, and 50
times at once from 10 ledger objects (separate connections) on PostgreSQL: one entry,
identical results, exactly one of them not a replay."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from ledger import Ledger, Outcome
from ledger.model import entry_id_for_key
from tests.conftest import require_postgres, reset_postgres

pytestmark = pytest.mark.postgres


def test_fifty_concurrent_duplicates_apply_once() -> None:
    url = require_postgres()
    Ledger.open(url).close()
    reset_postgres(url)
    with Ledger.open(url) as books:
        books.open_account("bank", "USD", normal="debit")
        books.open_account("alice", "USD", min_balance="0")
    ledgers = [Ledger.open(url, create_schema=False) for _ in range(10)]
    gate = threading.Barrier(50)
    results: list[Outcome] = []
    lock = threading.Lock()

    def send(books: Ledger) -> None:
        gate.wait()
        out = books.transfer("once", debit="bank", credit="alice", amount="7.25", asset="USD")
        with lock:
            results.append(out)

    threads = [threading.Thread(target=send, args=(ledgers[i % 10],)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len(results) == 50
        assert {(o.status, o.entry_id, o.kind) for o in results} == {
            ("applied", entry_id_for_key("once"), "posted")
        }
        assert sum(not o.replayed for o in results) == 1
        twice = ledgers[0].transfer(
            "once", debit="bank", credit="alice", amount="7.25", asset="USD"
        )
        assert twice.replayed
        assert ledgers[0].balance("alice").posted == Decimal("7.25")
        assert len(ledgers[0].store.load_streams([entry_id_for_key("once")])) == 1
    finally:
        for books in ledgers:
            books.close()

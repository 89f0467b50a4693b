"""The garbage collector is the host's: the ledger leaves it alone unless the
application opens it with ``pause_gc=True`` (and then restores it after each batch)."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from ledger import Ledger


def _batch(books: Ledger, prefix: str) -> None:
    books.submit_all(
        [
            {
                "kind": "post_entry",
                "key": f"{prefix}-{i}",
                "legs": [
                    {"account": "bank", "amount": "1", "asset": "USD"},
                    {"account": "w", "amount": "-1", "asset": "USD"},
                ],
            }
            for i in range(3000)
        ],
        chunk_size=500,
    )


@pytest.mark.parametrize("pause_gc", [False, True])
def test_the_collector_is_touched_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pause_gc: bool
) -> None:
    calls: list[str] = []
    real_disable = gc.disable
    monkeypatch.setattr(gc, "disable", lambda: (calls.append("disable"), real_disable())[1])
    with Ledger.open(f"sqlite:///{tmp_path}/g.db", pause_gc=pause_gc) as books:
        books.open_account("bank", "USD", normal="debit")
        books.open_account("w", "USD")
        _batch(books, "p")
        assert gc.isenabled()  # restored (or never touched)
    assert bool(calls) == pause_gc

"""The opening API: ``AsyncLedger.open`` takes ``Ledger.open``'s keywords (typed, so a
misspelt or mistyped option is a type error and, at run time, a TypeError), and a
closed ledger opens no read-model connection."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger import Ledger, StoreError
from ledger.adapters import opening
from ledger.errors import StoreUnavailable


def test_open_views_on_a_closed_ledger_raises_the_closed_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    books = Ledger.open(f"sqlite:///{tmp_path / 'b.db'}")
    views = books.open_views()  # open: a connection of its own
    views.close()
    books.close()
    opened: list[object] = []
    monkeypatch.setattr(opening, "open_view_store", lambda *a, **k: opened.append(a))
    with pytest.raises(StoreError, match="the ledger is closed") as raised:
        books.open_views()
    assert not isinstance(raised.value, StoreUnavailable)
    assert not opened  # no new connection

"""The opening API: ``AsyncLedger.open`` takes ``Ledger.open``'s keywords (typed, so a
misspelt or mistyped option is a type error and, at run time, a TypeError), and a
closed ledger opens no read-model connection."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from typing import Any

import pytest

from ledger import AsyncLedger, Ledger, StoreError
from ledger.adapters import opening
from ledger.errors import StoreUnavailable


def _parameters(method: Any) -> list[tuple[str, Any, Any, Any]]:
    return [
        (p.name, p.kind, p.default, p.annotation)
        for p in inspect.signature(method).parameters.values()
    ]


def test_async_open_has_the_keywords_of_ledger_open() -> None:
    sync, aio = _parameters(Ledger.open), _parameters(AsyncLedger.open)
    assert aio == sync  # names, keyword-only, defaults and annotations alike
    assert inspect.signature(AsyncLedger.open).return_annotation == "AsyncLedger"
    assert all(kind is not inspect.Parameter.VAR_KEYWORD for _, kind, _, _ in aio)


def test_async_open_documents_the_options() -> None:
    doc = inspect.getdoc(AsyncLedger.open) or ""
    for option in ("create_schema", "durability", "keyring", "pause_gc", "queue_commands_max"):
        assert option in doc


def test_async_open_refuses_an_unknown_keyword(tmp_path: Path) -> None:
    opened: list[object] = []
    url = f"sqlite:///{tmp_path / 'b.db'}"

    async def main() -> None:
        with pytest.raises(TypeError, match="durabilty"):
            opened.append(await AsyncLedger.open(url, durabilty="allow"))  # type: ignore[call-arg]

    asyncio.run(main())
    assert not opened
    assert not (tmp_path / "b.db").exists()  # refused before anything was opened


def test_async_open_passes_every_option_on(tmp_path: Path) -> None:
    async def main() -> None:
        books = await AsyncLedger.open(
            f"sqlite:///{tmp_path / 'b.db'}", durability="allow", pause_gc=True
        )
        try:
            await books.open_account("cash", "USD")
        finally:
            await books.close()
        with pytest.raises(ValueError, match="durability"):
            await AsyncLedger.open(f"sqlite:///{tmp_path / 'c.db'}", durability="maybe")  # type: ignore[arg-type]

    asyncio.run(main())


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

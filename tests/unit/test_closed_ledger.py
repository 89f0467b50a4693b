"""A closed ledger says so, for reads as for writes: one typed error, never a store's
own (which may look like an outage worth retrying) or an untyped pool error."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ledger import AsyncLedger, Ledger, StoreError
from ledger.errors import StoreUnavailable

CALLS: dict[str, Callable[[Ledger], Any]] = {
    "balance": lambda b: b.balance("cash"),
    "entry": lambda b: b.entry(uuid.uuid4()),
    "recorded": lambda b: b.recorded("k1"),
    "asset": lambda b: b.asset("PTS"),
    "request_status": lambda b: b.request_status(uuid.uuid4()),
    "due_expiries": lambda b: b.due_expiries(),
    "expire_due": lambda b: b.expire_due(),
    "submit": lambda b: b.open_account("other", "USD"),
    "submit_all": lambda b: b.submit_all(
        [{"kind": "open_account", "key": "o", "account": "o", "asset": "USD"}]
    ),
}


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("where", ["file", "memory"])
def test_every_call_on_a_closed_ledger_raises_the_closed_error(
    tmp_path: Path, where: str, call: str
) -> None:
    url = "sqlite:///:memory:" if where == "memory" else f"sqlite:///{tmp_path / 'b.db'}"
    books = Ledger.open(url)
    books.open_account("cash", "USD")
    books.close()
    assert books.closed
    with pytest.raises(StoreError, match="the ledger is closed") as raised:
        CALLS[call](books)
    assert not isinstance(raised.value, StoreUnavailable)  # not an outage to retry
    with pytest.raises(StoreError, match="the ledger is closed"), books:
        pass
    books.close()  # closing again does nothing


def test_an_async_ledger_closed_says_so_too(tmp_path: Path) -> None:
    async def main() -> None:
        books = await AsyncLedger.open(f"sqlite:///{tmp_path / 'b.db'}")
        await books.open_account("cash", "USD")
        await books.close()
        with pytest.raises(StoreError, match="the ledger is closed"):
            await books.balance("cash")
        with pytest.raises(StoreError, match="the ledger is closed"):
            await books.open_account("other", "USD")
        with pytest.raises(StoreError, match="the ledger is closed"):
            async with books:
                pass
        wrapped = Ledger.open(f"sqlite:///{tmp_path / 'c.db'}")
        wrapped.close()
        with pytest.raises(StoreError, match="the ledger is closed"):
            async with AsyncLedger(wrapped):
                pass

    asyncio.run(main())

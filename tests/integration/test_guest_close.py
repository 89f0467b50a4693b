"""A refused ``Ledger.close`` changes nothing.

``close`` is refused (RuntimeError) on the thread of an event loop that commits the
ledger's asyncio writes: it would block the loop that has to finish them. It used to
mark the ledger closed first: afterwards ``closed`` was True and every read raised
"the ledger is closed" while writes still applied and the store stayed open. Now the
ledger stays open and whole until a close that is allowed (``await
AsyncLedger.close()``)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from ledger import AsyncLedger

pytestmark = pytest.mark.postgres


def test_a_close_refused_in_the_committing_loop_leaves_the_ledger_open(pg_url: str) -> None:
    async def main() -> None:
        abooks = await AsyncLedger.open(pg_url)
        await abooks.open_account("bank", "USD", normal="debit")
        await abooks.open_account("alice", "USD")
        await abooks.transfer("t1", debit="bank", credit="alice", amount="1", asset="USD")
        with pytest.raises(RuntimeError, match="event loop"):
            abooks.sync.close()  # blocking, on the loop that commits: refused
        assert not abooks.sync.closed
        assert (await abooks.balance("alice")).available == Decimal("1")
        await abooks.transfer("t2", debit="bank", credit="alice", amount="1", asset="USD")
        assert (await abooks.balance("alice")).available == Decimal("2")
        await abooks.close()
        assert abooks.sync.closed

    asyncio.run(main())

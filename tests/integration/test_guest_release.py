"""Connections and sockets a ledger no longer needs are released when it stops
needing them, not left to the garbage collector (which warns): the connection of a
loop that has ended (an ``asyncio.run`` of an ``AsyncLedger`` wrapping the ledger,
never closed with ``await``) when the ledger closes, and a forked child's copies of
the committer's wake sockets when the child first writes."""

from __future__ import annotations

import asyncio
import gc
import os
import warnings

import pytest

from ledger import AsyncLedger, Ledger


def test_a_closed_loops_connection_is_released_at_close(store_url: str) -> None:
    books = Ledger.open(store_url)
    books.open_account("bank", "USD", normal="debit")
    books.open_account("w", "USD")

    async def pay() -> None:
        await AsyncLedger(books).transfer("k1", debit="bank", credit="w", amount="1", asset="USD")

    asyncio.run(pay())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        books.close()
        gc.collect()
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == [], [str(w.message) for w in leaks]


@pytest.mark.postgres
def test_a_forked_child_closes_its_copy_of_the_wake_sockets(pg_url: str) -> None:
    books = Ledger.open(pg_url)
    try:
        books.open_account("bank", "USD", normal="debit")
        books.open_account("w", "USD")
        books.transfer("k0", debit="bank", credit="w", amount="1", asset="USD")
        books._committer._wake_pair()  # as a committer thread waiting on an append has
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    books.transfer("k-child", debit="bank", credit="w", amount="1", asset="USD")
                    gc.collect()
                leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
                code = 3 if leaks else 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child left sockets to the collector"
    finally:
        books.close()

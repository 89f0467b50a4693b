"""The ledger's own connections send the append through libpq directly
(:mod:`ledger.adapters.pg_wire`), against the real server: a statement larger than
the socket's buffer is flushed from the event loop without blocking it, a database
without the append function is a typed error on both connections (and nothing is
written), and the append is prepared again on a connection opened again."""

from __future__ import annotations

import asyncio
import os
import socket
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from ledger import AsyncLedger, Ledger
from ledger.adapters.postgres_store import APPEND_FUNCTION
from ledger.errors import StoreError
from ledger.projections.audit import audit
from tests.conftest import require_postgres
from tests.contract.test_online_group_commit import WALLETS, payment, setup, total

pytestmark = pytest.mark.postgres


def test_a_group_larger_than_the_socket_buffer_is_flushed_from_the_loop(pg_url: str) -> None:
    with Ledger.open(pg_url) as books:
        setup(books, funds="10000")
        commands = [payment(f"big-{i}", i % WALLETS, (i + 1) % WALLETS) for i in range(1500)]

        async def main() -> int:
            abooks = AsyncLedger(books)
            assert (await abooks.submit(payment("first", 1, 2))).ok  # opens the loop's connection
            driver = books._committer._drivers[asyncio.get_running_loop()]  # type: ignore[attr-defined]
            fd = os.dup(driver.appender._conn.pgconn.socket)
            with socket.socket(fileno=fd) as sock:  # the same socket: a send buffer of 4 KiB
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            outcomes = await asyncio.wait_for(abooks.submit_many(commands), 30)
            return sum(o.ok for o in outcomes)

        assert asyncio.run(main()) == 1500
        stats = books.group_commit_stats
        assert stats.loop_commits >= 1 and stats.largest_group == 1500
        assert total(books) == Decimal(10000 * WALLETS)
        assert audit(books.store).clean


def _drop_function(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP FUNCTION {APPEND_FUNCTION}")


def _events(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM stored_events").fetchone()
    assert row is not None
    return int(row[0])


def test_a_missing_append_function_is_a_typed_error_on_both_connections() -> None:
    url = require_postgres("nofunction")  # a database of its own: the function is dropped
    with Ledger.open(url) as books:  # creates the function again if an earlier run dropped it
        books.open_account("cash", "USD", key="open-cash")
        before = _events(url)
        _drop_function(url)
        with pytest.raises(StoreError, match="lacks the ledger's append function"):
            books.open_account("thread", "USD")  # the committer thread's connection

        async def on_the_loop() -> None:
            await AsyncLedger(books).open_account("loop", "USD")

        with pytest.raises(StoreError, match="lacks the ledger's append function"):
            asyncio.run(on_the_loop())
        assert _events(url) == before
    with Ledger.open(url) as books:  # the schema is made whole again
        assert books.open_account("later", "USD").ok


def _prepared(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute("SELECT name FROM pg_prepared_statements").fetchall()
    return sorted(str(r[0]) for r in rows)


def test_the_append_is_prepared_again_on_a_new_connection(pg_url: str) -> None:
    with Ledger.open(pg_url) as books:
        setup(books)
        committer = books._committer._connection  # type: ignore[attr-defined]
        first = committer._conn
        assert "ledger_append" in _prepared(first)
        committer.close()
        assert books.submit(payment("after-close", 1, 2)).ok  # reopened, prepared again
        assert committer._conn is not first and "ledger_append" in _prepared(committer._conn)
        assert total(books) == Decimal(100 * WALLETS)

"""The ledger's own connections send the append through libpq directly
(:mod:`ledger.adapters.pg_wire`), against the real server: a statement larger than
the socket's buffer is flushed from the event loop without blocking it, a database
without the append function is a typed error on both connections (and nothing is
written), the append is prepared again on a connection opened again, and the
committer's read (binary rows) gives what the store's read gives."""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import threading
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import errors as pg_errors

from ledger import AsyncLedger, Ledger, Outcome
from ledger.adapters import pg_wire
from ledger.adapters.postgres_store import APPEND_FUNCTION
from ledger.errors import StoreError
from ledger.model import account_stream_id, asset_stream_id, entry_id_for_key
from ledger.projections.audit import audit
from tests.conftest import require_postgres, reset_postgres
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


def _refuse_at_commit(url: str, key: str) -> None:
    """A deferred trigger: the append writing ``key``'s entry returns its row, then its
    commit fails (as a commit-time serialization failure or a full notification queue
    would)."""
    stream = entry_id_for_key(key)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE OR REPLACE FUNCTION ledger_test_refuse() RETURNS trigger"
            " LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$"
        )
        conn.execute("DROP TRIGGER IF EXISTS ledger_test_refuse ON stored_events")
        conn.execute(
            "CREATE CONSTRAINT TRIGGER ledger_test_refuse AFTER INSERT ON stored_events"
            " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
            f" WHEN (NEW.originator_id = '{stream}'::uuid)"
            " EXECUTE FUNCTION ledger_test_refuse()"
        )


def _allow(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TRIGGER IF EXISTS ledger_test_refuse ON stored_events")


@pytest.mark.parametrize("path", ["thread", "loop"])
def test_a_commit_that_fails_after_the_row_is_an_error_not_applied(path: str) -> None:
    url = require_postgres("commitfails")  # a database of its own: it gets a trigger
    key = f"boom-{path}"
    Ledger.open(url).close()  # the schema
    _allow(url)
    reset_postgres(url)
    with Ledger.open(url) as books:
        setup(books)
        _refuse_at_commit(url, key)
        try:
            with pytest.raises(StoreError, match="refused at commit"):
                if path == "thread":
                    books.submit(payment(key, 1, 2))
                else:
                    asyncio.run(AsyncLedger(books).submit(payment(key, 1, 2)))
            assert books.recorded(key) is None  # nothing was written
            assert books.balance("w1").posted == Decimal(100)
        finally:
            _allow(url)
        again = books.submit(payment(key, 1, 2))  # applied now, not a replay
        assert again.ok and not again.replayed
        assert total(books) == Decimal(100 * WALLETS)
        assert audit(books.store).clean


def test_the_committer_thread_flushes_a_group_larger_than_its_send_buffer(pg_url: str) -> None:
    with Ledger.open(pg_url) as books:
        setup(books, funds="10000")
        assert books.submit(payment("first", 1, 2)).ok  # opens the thread's connection
        connection = books._committer._connection._conn  # type: ignore[attr-defined]
        commands = [payment(f"big-{i}", i % WALLETS, (i + 1) % WALLETS) for i in range(1500)]
        outcomes: list[Outcome] = []
        with socket.socket(fileno=os.dup(connection.pgconn.socket)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            worker = threading.Thread(target=lambda: outcomes.extend(books.submit_many(commands)))
            worker.daemon = True
            worker.start()
            worker.join(60)
            stuck = worker.is_alive()
            if stuck:  # free the committer (else closing the ledger waits for it forever)
                sock.shutdown(socket.SHUT_RDWR)
                worker.join(60)
        assert not stuck, "the committer never finished sending the group"
        assert sum(o.ok for o in outcomes) == 1500
        assert books.group_commit_stats.redone == 0
        assert total(books) == Decimal(10000 * WALLETS)
        assert audit(books.store).clean


def test_connections_on_file_descriptors_above_1023_are_waited_on(pg_url: str) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if limit < 2048:
        pytest.skip("the open-file limit is too low to open 1100 files beside the rest")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, limit), hard))
    held: list[int] = []
    try:
        while len(held) < 1100:  # the descriptors opened next are above 1023
            held.append(os.open(os.devnull, os.O_RDONLY))
        with Ledger.open(pg_url) as books:
            setup(books)
            outcomes = [books.submit(payment(f"high-{i}", 1, 2)) for i in range(5)]
            connection = books._committer._connection._conn  # type: ignore[attr-defined]
            assert connection.pgconn.socket > 1023
            assert all(o.ok and not o.replayed for o in outcomes)
            assert books.group_commit_stats.redone == 0
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_committers_read_gives_what_the_stores_read_gives(pg_url: str) -> None:
    with Ledger.open(pg_url) as books:
        setup(books, funds="1")
        books.declare_asset("PTS", 2)
        applied = books.submit(payment("paid-é", 0, 1))  # a key in UTF-8
        rejected = books.submit(payment("too-much", 2, 1, amount="5"))
        assert applied.ok and rejected.status == "rejected"
        keys = [entry_id_for_key(k) for k in ("paid-é", "too-much", "never", "fund-3")]
        streams = [account_stream_id(f"w{w}") for w in range(WALLETS)]
        streams += [account_stream_id("nobody"), asset_stream_id("PTS")]
        streams.append(entry_id_for_key("fund-0"))
        connection = books.store.committer_connection()  # type: ignore[attr-defined]
        try:
            records, heads = connection.read(keys, streams)
        finally:
            connection.close()
        assert (records, heads) == books.store.read(keys, streams)
        assert len(records) == 3 and len(heads) == WALLETS + 2
        assert records[keys[0]].key == "paid-é"
        first, last = heads[account_stream_id("w0")]
        assert first.originator_version == 1 and last.originator_version == 3


def test_a_prepare_that_fails_halfway_starts_again_on_a_new_connection(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Ledger.open(pg_url) as books:
        setup(books)
        connection: Any = books.store.committer_connection()  # type: ignore[attr-defined]
        real = pg_wire.prepare
        failed: list[bytes] = []

        def read_prepare_fails_once(pgconn: Any, name: bytes, statement: bytes) -> None:
            if name == pg_wire.READ_STATEMENT and not failed:
                failed.append(name)  # the append is prepared already on this connection
                raise pg_errors.QueryCanceled("canceling statement due to statement timeout")
            real(pgconn, name, statement)

        monkeypatch.setattr(pg_wire, "prepare", read_prepare_fails_once)
        try:
            with pytest.raises(StoreError):
                connection.read([], [account_stream_id("w0")])
            _, heads = connection.read([], [account_stream_id("w0")])  # a new connection
            assert account_stream_id("w0") in heads
        finally:
            connection.close()

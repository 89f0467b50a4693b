"""Read-model databases: the same SQLite file or PostgreSQL database as the events.

On PostgreSQL the read models live in the ledger's schema (the event store's
``schema``: the connection's ``current_schema()`` when the ledger was opened), beside
its events: each transaction and snapshot sets its ``search_path`` to that schema
alone (``SET LOCAL``: the session's own setting is left as given), so the read
models' unqualified tables are made and found there and nowhere else, and two
schemas of one database hold two ledgers' read models apart.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from ledger.adapters.pg_appenders import direct_connection_kwargs
from ledger.adapters.pg_fork import forget_connection
from ledger.adapters.sqlite_store import SQLiteEventStore
from ledger.errors import StoreError, StoreUnavailable
from ledger.sealing import Sealer, sealing

__all__ = ["PostgresViewStore", "SQLiteViewStore", "open_view_store"]

_PG_TYPES = {"text": "text", "int": "bigint", "amount": "numeric"}


class _SQLiteWriter:
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.conn.executemany(sql, rows)

    def bulk_insert(
        self,
        table: str,
        columns: Sequence[tuple[str, str]],
        rows: Sequence[Sequence[Any]],
        suffix_sql: str = "",
    ) -> None:
        if rows:
            names = ", ".join(name for name, _ in columns)
            marks = ", ".join("?" for _ in columns)
            self.conn.executemany(
                f"INSERT INTO {table} ({names}) VALUES ({marks}) {suffix_sql}", rows
            )

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(sql, params).fetchall())

    def amount(self, value: int) -> Any:
        return str(value)

    def ddl(self, sql: str) -> str:
        return sql.replace("{amount}", "TEXT")


class SQLiteViewStore:
    """Read models in the ledger's SQLite file (WAL: readers never block the writer)."""

    def __init__(self, url: str, path: str, *, sealer: Sealer | None = None) -> None:
        self.url = url
        self.sealer = sealer
        try:
            self.conn = sqlite3.connect(
                path, isolation_level=None, timeout=30, check_same_thread=False, uri=True
            )
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as e:
            raise StoreUnavailable(f"SQLite store {url} is unavailable: {e}") from e

    @contextmanager
    def transaction(self) -> Iterator[_SQLiteWriter]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                with sealing(self.sealer):
                    yield _SQLiteWriter(self.conn)
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as e:
            if getattr(e, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_READONLY:
                # Not busy: waiting and trying again cannot make it writable.
                raise StoreError(f"SQLite store {self.url} is read-only: {e}") from e
            raise StoreUnavailable(f"SQLite store {self.url} is busy or unavailable: {e}") from e
        except sqlite3.Error as e:
            raise StoreError(f"SQLite store {self.url} failed: {e}") from e

    @contextmanager
    def snapshot(self) -> Iterator[_SQLiteWriter]:
        """A read transaction."""
        try:
            self.conn.execute("BEGIN")
            try:
                with sealing(self.sealer):
                    yield _SQLiteWriter(self.conn)
            finally:
                self.conn.execute("COMMIT")
        except sqlite3.Error as e:
            raise StoreError(f"SQLite store {self.url} failed: {e}") from e

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


class _PostgresWriter:
    dialect = "postgresql"

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self.cur = cur

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("?", "%s")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.cur.execute(self._sql(sql), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.cur.executemany(self._sql(sql), rows)

    def bulk_insert(
        self,
        table: str,
        columns: Sequence[tuple[str, str]],
        rows: Sequence[Sequence[Any]],
        suffix_sql: str = "",
    ) -> None:
        """One ``INSERT ... SELECT FROM unnest(arrays)`` for all rows."""
        if not rows:
            return
        names = ", ".join(name for name, _ in columns)
        arrays = ", ".join(f"%b::{_PG_TYPES[kind]}[]" for _, kind in columns)  # binary: no quoting
        params = [list(column) for column in zip(*rows, strict=True)]
        self.cur.execute(
            f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) {suffix_sql}", params
        )

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.cur.execute(self._sql(sql), params)
        return list(self.cur.fetchall())

    def amount(self, value: int) -> Any:
        return value

    def ddl(self, sql: str) -> str:
        return sql.replace("{amount}", "NUMERIC(40,0)")


class PostgresViewStore:
    """Read models in the ledger's PostgreSQL database, in its schema: ``schema``, or
    the connection's ``current_schema()`` without one."""

    def __init__(
        self,
        url: str,
        settings: dict[str, Any],
        *,
        sealer: Sealer | None = None,
        schema: str | None = None,
    ) -> None:
        self.url = url
        self.sealer = sealer
        self._connect_kwargs = direct_connection_kwargs(settings)
        self._pid = os.getpid()
        self.conn = self._connect()
        try:
            #: The schema the read models live in.
            self.schema = schema if schema is not None else self._current_schema()
        except BaseException:
            self.conn.close()
            raise
        self._pin = sql.SQL("SET LOCAL search_path TO {0}").format(sql.Identifier(self.schema))

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(**self._connect_kwargs)
        except psycopg.OperationalError as e:
            raise StoreUnavailable(f"PostgreSQL store {self.url} is unavailable: {e}") from e

    def _live(self) -> psycopg.Connection[Any]:
        """The connection, made again if the last one was lost (a server restart, a
        failover, a terminated session): a follower retrying StoreUnavailable then
        recovers instead of failing on the dead connection forever."""
        if self._pid != os.getpid():  # a forked child: the parent's session is not ours
            self._pid = os.getpid()
            forget_connection(self.conn)
        if self.conn.closed:
            self.conn = self._connect()
        return self.conn

    def _current_schema(self) -> str:
        try:
            row = self.conn.execute(
                "SELECT current_schema(), current_setting('search_path')"
            ).fetchone()
        except psycopg.OperationalError as e:
            raise StoreUnavailable(f"PostgreSQL store {self.url} is unavailable: {e}") from e
        except psycopg.Error as e:
            raise StoreError(f"PostgreSQL store {self.url} failed: {e}") from e
        assert row is not None
        if row[0] is None:
            raise StoreError(
                f"PostgreSQL store {self.url}: no schema of the search_path ({row[1]}) "
                "exists, so the read models have no schema to live in"
            )
        return str(row[0])

    @contextmanager
    def transaction(self) -> Iterator[_PostgresWriter]:
        """One transaction; a serialization failure or deadlock surfaces as
        StoreUnavailable so the caller retries the whole batch."""
        conn = self._live()
        try:
            with conn.transaction(), conn.cursor() as cur, sealing(self.sealer):
                cur.execute(self._pin)
                yield _PostgresWriter(cur)
        except psycopg.OperationalError as e:
            raise StoreUnavailable(f"PostgreSQL store {self.url} is unavailable: {e}") from e
        except psycopg.Error as e:
            raise StoreError(f"PostgreSQL store {self.url} failed: {e}") from e

    @contextmanager
    def snapshot(self) -> Iterator[_PostgresWriter]:
        """A read-only repeatable-read transaction."""
        conn = self._live()
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                cur.execute(self._pin)
                with sealing(self.sealer):
                    yield _PostgresWriter(cur)
        except psycopg.OperationalError as e:
            raise StoreUnavailable(f"PostgreSQL store {self.url} is unavailable: {e}") from e
        except psycopg.Error as e:
            raise StoreError(f"PostgreSQL store {self.url} failed: {e}") from e

    def close(self) -> None:
        """Close the connection (in a forked child, without ending the parent's
        session on it)."""
        if self._pid != os.getpid():
            forget_connection(self.conn)
            return
        self.conn.close()


def open_view_store(
    store: object, *, sealer: Sealer | None = None
) -> SQLiteViewStore | PostgresViewStore:
    """The read-model database of an open event store (the same database); ``sealer``
    seals the personal text the read models copy (give it the ledger's keyring)."""
    if isinstance(store, SQLiteEventStore):
        return SQLiteViewStore(store.url, store.path, sealer=sealer)
    from ledger.adapters.postgres_store import PostgresEventStore  # noqa: PLC0415 - on demand

    if isinstance(store, PostgresEventStore):
        return PostgresViewStore(store.url, store.settings, sealer=sealer, schema=store.schema)
    raise StoreError(f"no read-model database for store {store!r}")

"""Appending to PostgreSQL on a connection of the appender's own.

Both send the store's one-statement append (the same function, the same binary array
parameters) as :meth:`PostgresEventStore.append`, prepared by name and sent through
libpq directly (see :mod:`.pg_wire`), on a connection opened on first use with the
store's settings (one connection more per process, or per event loop):

* :class:`PostgresCommitterConnection` (the :class:`~ledger.store.CommitterConnection`)
  for the group commit's thread, which also reads what its groups need through it.
  Borrowing a pooled connection for every group measured slower (one caller 1,264
  -> 1,471 payments/s, 32 threads 6,856 -> 7,707/s with this connection). The pool's
  own bookkeeping is about 7 us; the pool hands its connections out in turn, so each
  group went to another PostgreSQL backend, which we take to be the cost.
* :class:`PostgresLoopAppender` (the :class:`~ledger.store.LoopAppender`) for an
  asyncio event loop, without blocking it (a psycopg ``AsyncConnection``).

Groups too large for one call go through the store's COPY path. Errors are the
store's: a conflict is :class:`~ledger.store.AppendConflict`, an unreachable server
or a statement the server stopped (lock timeout, cancelled)
:class:`~ledger.errors.StoreUnavailable`; a broken connection is dropped and opened
again on the next use, a working one is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Collection, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import psycopg
from eventsourcing.persistence import StoredEvent
from psycopg import errors as pg_errors
from psycopg import pq

from ledger.errors import StoreError, StoreUnavailable
from ledger.store import AppendConflict, KeyRecord, Known, WriteBatch

from . import pg_wire
from .pg_arrays import Int8Array, UuidArray, adapt
from .pg_fork import forget_connection

if TYPE_CHECKING:
    from .postgres_store import PostgresEventStore

__all__ = [
    "PostgresCommitterConnection",
    "PostgresLoopAppender",
    "direct_connection_kwargs",
    "prefer_generic_plans",
]

_CONFLICT = "a concurrent writer changed a stream or key this batch depends on"


class _Broken(Exception):
    """The server could not be reached or the statement failed on the server's side
    (lock timeout, cancelled): raise :attr:`error`, after dropping the connection if
    it is broken."""

    def __init__(self, error: StoreUnavailable) -> None:
        super().__init__(str(error))
        self.error = error


@contextlib.contextmanager
def _translated(store: PostgresEventStore) -> Iterator[None]:
    """Driver errors as the store's; a failed connection as :class:`_Broken`."""
    try:
        yield
    except pg_errors.UndefinedFunction as e:
        raise store.missing_function_error() from e
    except (psycopg.OperationalError, psycopg.InterfaceError) as e:
        message = f"PostgreSQL store {store.url} is unavailable: {e}"
        raise _Broken(StoreUnavailable(message)) from e
    except psycopg.IntegrityError as e:
        raise AppendConflict(str(e)) from e
    except psycopg.Error as e:
        raise StoreError(f"PostgreSQL store {store.url} failed: {e}") from e


def _check(written: bool) -> None:
    if not written:
        raise AppendConflict(_CONFLICT)


def direct_connection_kwargs(settings: dict[str, Any]) -> dict[str, Any]:
    """Arguments for a connection of the ledger's own outside the pool: the URL's
    settings as given, autocommit; a connect timeout of 5 s unless the URL or the
    environment (``PGCONNECT_TIMEOUT``, which libpq reads) sets one."""
    default = {} if os.environ.get("PGCONNECT_TIMEOUT") else {"connect_timeout": 5}
    return {**default, **settings, "autocommit": True}


#: Sets plan_cache_mode for the session only where its value is the server's built-in
#: default: any value from the URL's ``options``, PGOPTIONS, ``ALTER ROLE/DATABASE ...
#: SET`` or postgresql.conf has another source and stays, an explicit ``auto`` too. A
#: server without the setting (before PostgreSQL 12) has no such row: nothing is set.
_GENERIC_PLANS = (
    "SELECT set_config('plan_cache_mode', 'force_generic_plan', false)"
    " FROM pg_settings WHERE name = 'plan_cache_mode' AND source = 'default'"
)


def prefer_generic_plans(conn: psycopg.Connection[Any]) -> None:
    """Have the event store's prepared statements keep one generic plan on ``conn``.

    Under the default (``auto``) the server planned the decision's read again at every
    execution (its parameters are arrays whose length the generic plan cannot know,
    so it looks dearer than a plan made for each call): about 140 us of the server's
    CPU in a read of 8 streams that costs 107 us in all with the generic plan
    (measured). The statements the store prepares look rows up by key, or read an
    index in order (the log from a position, holds due by a time), which one plan
    serves as well; the append function's statements are planned the same way.
    Applies to the event store's own connections only (pooled, the committer's, the
    event loop's), and only where nobody chose a mode (see ``_GENERIC_PLANS``)."""
    conn.execute(_GENERIC_PLANS)


def _unusable(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any] | None) -> bool:
    return conn is None or conn.closed or conn.broken


class PostgresCommitterConnection:
    """Reads and appends for the one thread that uses it (the group commit's)."""

    def __init__(self, store: PostgresEventStore) -> None:
        self.store = store
        self._conn: psycopg.Connection[Any] | None = None
        #: Whether the append is prepared on the current connection.
        self._prepared = False
        #: The process the connection belongs to (a forked child leaves it alone).
        self._pid = os.getpid()

    def __del__(self) -> None:
        conn = self._conn
        if conn is not None and self._pid != os.getpid():
            forget_connection(conn)  # the parent's session: not ended from here

    def read(
        self,
        key_ids: Collection[uuid.UUID],
        stream_ids: Collection[uuid.UUID],
        known: Mapping[uuid.UUID, Known] | None = None,
    ) -> tuple[dict[uuid.UUID, KeyRecord], dict[uuid.UUID, tuple[StoredEvent, StoredEvent]]]:
        """As :meth:`PostgresEventStore.read` (the statement prepared by name, its rows
        in binary form, see :mod:`.pg_wire`)."""
        if not key_ids and not stream_ids and not known:
            return {}, {}
        known = known or {}
        streams, versions = pg_wire.read_streams(stream_ids, known)
        params = (UuidArray.of(key_ids), UuidArray.of(streams), Int8Array.of(versions))
        with self._errors():
            pgconn = self._prepared_connection().pgconn
            pg_wire.send_read(pgconn, params)
            rows = pg_wire.collect_rows(pgconn)
        return pg_wire.read_rows(rows, known)

    def load_streams(
        self, stream_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[StoredEvent, StoredEvent]]:
        """As :meth:`PostgresEventStore.load_streams`."""
        return self.read((), stream_ids)[1]

    def append(self, batch: WriteBatch) -> None:
        """Write ``batch`` atomically (as :meth:`PostgresEventStore.append`)."""
        if not self.send_append(batch):
            self.store.append(batch)
            return
        self.collect_append()

    def send_append(self, batch: WriteBatch) -> bool:
        """Send ``batch``'s append and return at once (True), or False for a batch too
        large for one call (append it with :meth:`append`). Until
        :meth:`collect_append`, nothing else may use the connection."""
        store = self.store
        if not store.fits_one_call(batch):
            return False
        with self._errors():
            pg_wire.send(self._prepared_connection().pgconn, store.append_params(batch))
        return True

    def wait_append(self, wake: int) -> bool:
        """Wait until the append sent can be collected (True) or ``wake`` (a file
        descriptor) is readable (False), without the GIL."""
        conn = self._conn
        if conn is None:
            return True  # dropped: collect_append says why
        return pg_wire.wait(conn.pgconn, wake)

    def collect_append(self) -> None:
        """The result of the append sent: return once it committed, or raise as
        :meth:`append` does."""
        with self._errors():
            conn = self._conn
            if conn is None:
                raise psycopg.OperationalError("the connection was dropped")
            written = pg_wire.collect(conn.pgconn)
        _check(written)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """The store's errors; a broken connection is dropped."""
        try:
            with _translated(self.store):
                yield
        except _Broken as e:
            if _unusable(self._conn):
                self.close()
            raise e.error from e.__cause__

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        # A connection not idle had a statement abandoned mid-flight (the committer
        # thread failed): it would refuse the next one, so it is opened again.
        idle = pq.TransactionStatus.IDLE
        if self._pid != os.getpid():
            self.close()  # the parent's connection (see close)
        elif conn is not None and not _unusable(conn) and conn.pgconn.transaction_status == idle:
            return conn
        self.close()
        conn = psycopg.connect(**direct_connection_kwargs(self.store.settings))
        try:
            prefer_generic_plans(conn)
            adapt(conn)
        except BaseException:
            conn.close()
            raise
        self._conn, self._prepared = conn, False
        return conn

    def _prepared_connection(self) -> psycopg.Connection[Any]:
        """The connection, with the append and the read prepared on it."""
        conn = self._connection()
        if not self._prepared:
            store = self.store
            try:
                pg_wire.prepare(conn.pgconn, pg_wire.APPEND_STATEMENT, store.append_statement(conn))
                pg_wire.prepare(conn.pgconn, pg_wire.READ_STATEMENT, store.read_statement(conn))
            except BaseException:
                self.close()  # one prepared and not the other: start again on a new one
                raise
            self._prepared = True
        return conn

    def close(self) -> None:
        """Close the connection (in a forked child, the parent's is only forgotten)."""
        conn, self._conn = self._conn, None
        if conn is not None and self._pid != os.getpid():
            forget_connection(conn)
        elif conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                conn.close()
        self._pid = os.getpid()


class PostgresLoopAppender:
    """Appends a store's batches from the event loop it is first used on."""

    def __init__(self, store: PostgresEventStore) -> None:
        self.store = store
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._pid = os.getpid()

    def __del__(self) -> None:
        conn = self._conn
        if conn is not None and self._pid != os.getpid():
            forget_connection(conn)  # the parent's session: not ended from here

    async def append(self, batch: WriteBatch) -> None:
        """Write ``batch`` atomically (as :meth:`PostgresEventStore.append`)."""
        store = self.store
        if not store.fits_one_call(batch):
            await asyncio.to_thread(store.append, batch)
            return
        try:
            with _translated(store):
                conn = self._conn
                if conn is None or _unusable(conn):
                    await self._drop()
                    conn = await self._connect()
                pg_wire.send(conn.pgconn, store.append_params(batch))
                written = await pg_wire.collect_async(conn.pgconn)
        except _Broken as e:
            if _unusable(self._conn):
                await self._drop()
            raise e.error from e.__cause__
        except (AppendConflict, StoreError):
            raise
        except BaseException:
            # Cancelled mid-statement (the loop is stopping): the connection's state is
            # unknown, so it is not used again.
            await self._drop()
            raise
        _check(written)

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(
            **direct_connection_kwargs(self.store.settings)
        )
        try:
            await conn.execute(_GENERIC_PLANS)  # as prefer_generic_plans
            statement = self.store.append_statement(conn)
            await pg_wire.prepare_async(conn.pgconn, pg_wire.APPEND_STATEMENT, statement)
        except BaseException:
            await conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._pid != os.getpid():
            forget_connection(conn)
        elif conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    async def aclose(self) -> None:
        """Close the connection."""
        await self._drop()

    def discard(self) -> None:
        """Close the connection without its loop (which has closed: the end of an
        ``asyncio.run``): libpq ends the session at once, nothing is awaited."""
        conn, self._conn = self._conn, None
        if conn is None or conn.closed:
            return
        if self._pid != os.getpid():
            forget_connection(conn)
            return
        with contextlib.suppress(psycopg.Error, OSError):
            conn.pgconn.finish()

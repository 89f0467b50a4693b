"""PostgreSQL event store (``postgresql://user:password@host:port/dbname``).

Built on eventsourcing's PostgreSQL datastore (psycopg 3 connection pool) and
application recorder (``stored_events`` table, composite-type bulk insert, LISTEN/NOTIFY
channel). Each append is one transaction: it takes the writers' lock (an advisory
lock held to the commit, which autovacuum does not wait on: see ``_write_lock_sql``),
so log positions become visible in commit order and a tailing reader never skips one;
checks the versions of streams the decision only read, bulk-inserts the
events, the idempotency records and the open-holds index, and commits. Primary keys on
(stream, version) and on the key id turn every race into a clean
:class:`~ledger.store.AppendConflict`.

A ledger lives in one schema: the connection's ``current_schema()`` when the store
is opened (the first schema of the ``search_path`` that exists: ``public`` unless the
URL's ``options``, the role or the database set another). Every object of the
ledger (the event table, its sequence and type, the append function, the keys and
holds tables, the read models of :mod:`.view_store`) is made and named in that schema,
and its NOTIFY channel and writers' lock carry the schema's name: two schemas of one
database are two independent ledgers.

Beside this module: finding the ledger's schema and creating its objects
(:mod:`.pg_schema`), the text of the statements the store runs
(:mod:`.pg_statements`), the session under the writers' lock (:mod:`.pg_session`),
connection settings (:mod:`.pg_conninfo`).
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar, cast

import psycopg
from eventsourcing.persistence import (
    ConnectionPoolClosedError,
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.utils import retry
from psycopg.adapt import PyFormat
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed, Identifier, Literal, Placeholder

from ledger.errors import StoreError, StoreUnavailable
from ledger.events import TOPIC_ENTRY
from ledger.logs import get_logger
from ledger.store import AppendConflict, KeyRecord, Known, WriteBatch, notification

from . import pg_statements
from .pg_appenders import (
    PostgresCommitterConnection,
    PostgresLoopAppender,
    direct_connection_kwargs,
)
from .pg_arrays import ByteaArray, Int8Array, TextArray, TimestamptzArray, UuidArray, adapt
from .pg_conninfo import parse_conninfo, parse_postgres_url, store_settings
from .pg_datastore import Datastore, SessionLost
from .pg_guest import PostgresApplicationRecorder
from .pg_schema import (
    APPEND_FUNCTION,
    SCHEMA_LOCK_KEY,
    append_function_ddl,
    create_recorder_tables,
    lock_key,
    notify_channel,
    probe,
    side_tables_ddl,
)
from .pg_session import PostgresSession
from .pg_wire import append_call, read_rows, read_streams

__all__ = ["APPEND_FUNCTION", "PostgresEventStore", "notify_channel", "parse_postgres_url"]

log = get_logger(__name__)
T = TypeVar("T")

#: Seconds a writer waits for the event table lock before the attempt is retried.
LOCK_TIMEOUT_S = 10
#: Appends with up to this many events are one call of the append function; larger
#: ones lock, check and COPY in several statements.
FUNCTION_EVENTS_MAX = 2000


def _key_columns(batch: WriteBatch) -> tuple[list[Any], ...]:
    return (
        [k.key_id for k in batch.keys],
        [k.key for k in batch.keys],
        [k.fingerprint for k in batch.keys],
        [k.outcome for k in batch.keys],
    )


class PostgresEventStore:
    """An :class:`~ledger.store.EventStore` in a PostgreSQL database."""

    def __init__(self, url: str, *, pool_size: int = 2, require_durable: bool = True) -> None:
        info = parse_conninfo(url)
        self.url = info.shown
        self.settings = store_settings(info)
        #: The schema every object of this ledger lives in (see the module's docs).
        self.schema = probe(info, self.settings)
        #: The channel every append notifies (LISTEN on it to hear of new events).
        self.channel = notify_channel(self.schema)
        self.require_durable = require_durable
        self.datastore = Datastore(
            self.settings, schema=self.schema, pool_size=pool_size, lock_timeout=LOCK_TIMEOUT_S
        )
        self.recorder = self._call(lambda: PostgresApplicationRecorder(self.datastore))
        self.recorder.channel_name = self.channel  # eventsourcing's subscriptions listen here
        self._tables = {"schema": Identifier(self.schema)}
        #: The advisory lock writers of this schema serialise on (see _write_lock_sql).
        self._write_lock_key = lock_key(f"ledger-write:{self.schema}")
        # The statements of pg_statements, rendered for this schema once.
        self._select_check = pg_statements.SELECT_CHECK.format(**self._tables)
        self._copy_events = pg_statements.COPY_EVENTS.format(**self._tables)
        self._read_template = pg_statements.READ_TEMPLATE
        self._select_read = self._read_template.format(
            keys=Placeholder("keys", PyFormat.BINARY),
            streams=Placeholder("streams", PyFormat.BINARY),
            versions=Placeholder("versions", PyFormat.BINARY),
            topic=Literal(TOPIC_ENTRY),
            **self._tables,
        )
        self._notify = SQL("NOTIFY {0}").format(Identifier(self.channel))
        self._select_log = pg_statements.SELECT_LOG.format(**self._tables)
        self._append_call = pg_statements.APPEND_CALL.format(
            fn=Identifier(APPEND_FUNCTION), **self._tables
        )
        self._append_call_bytes: bytes | None = None
        self._adapted: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()
        self._insert_keys = pg_statements.INSERT_KEYS.format(**self._tables)
        self._insert_holds = pg_statements.INSERT_HOLDS.format(**self._tables)
        self._delete_holds = pg_statements.DELETE_HOLDS.format(**self._tables)
        self._select_due = pg_statements.SELECT_DUE.format(**self._tables)

    @contextmanager
    def _translated(self, *, conflicts: bool = False) -> Iterator[None]:
        """Driver errors as the ledger's: unreachable -> StoreUnavailable (retried),
        a unique violation -> AppendConflict (when ``conflicts``), else StoreError."""
        try:
            yield
        except AppendConflict:
            raise
        except (IntegrityError, psycopg.errors.UniqueViolation) as e:
            if conflicts:
                raise AppendConflict(str(e)) from e
            raise StoreError(f"PostgreSQL store {self.url} failed: {e}") from e
        except (OperationalError, InterfaceError, psycopg.OperationalError) as e:
            raise StoreUnavailable(f"PostgreSQL store {self.url} is unavailable: {e}") from e
        except PersistenceError as e:
            raise StoreError(f"PostgreSQL store {self.url} failed: {e}") from e
        except ConnectionPoolClosedError as e:  # a read racing close()
            raise StoreError(f"PostgreSQL store {self.url} is closed") from e

    def _call(self, fn: Any) -> Any:
        with self._translated():
            return fn()

    @contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor[Any]]:
        with (
            self._translated(),
            self.datastore.get_connection() as conn,
            conn.cursor() as cur,
        ):
            yield cur

    def _reading(self, read: Callable[[psycopg.Cursor[Any]], T]) -> T:
        """Run ``read`` on a pooled connection's cursor; once more, on another, if the
        server had ended the session (the pool keeps idle sessions it cannot know are
        gone: after a restart, a failover or an idle timeout, each would fail a read
        while the server is up). eventsourcing's reads retry the same way."""
        try:
            with self._cursor() as cur:
                return read(cur)
        except StoreUnavailable as e:
            if not isinstance(e.__cause__, SessionLost):
                raise
        with self._cursor() as cur:
            return read(cur)

    def create_schema(self) -> None:
        """Create tables once; concurrent callers wait on an advisory lock."""
        try:
            with psycopg.connect(**direct_connection_kwargs(self.settings)) as conn:
                conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))
                try:
                    self._call(lambda: create_recorder_tables(self.recorder, self.datastore, conn))
                    with conn.transaction():
                        for statement in side_tables_ddl(self._tables):
                            conn.execute(statement)
                        conn.execute(self._append_function_ddl())
                finally:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK_KEY,))
        except psycopg.OperationalError as e:
            raise StoreUnavailable(f"PostgreSQL store {self.url} is unavailable: {e}") from e
        except psycopg.Error as e:  # no right to create in the schema, say
            raise StoreError(
                f"PostgreSQL store {self.url} cannot create the ledger's tables in schema "
                f"{self.schema!r}: {e}"
            ) from e
        self.check_durability()

    def _append_function_ddl(self) -> Composed:
        """The append function of this ledger (see :func:`.pg_schema.append_function_ddl`)."""
        return append_function_ddl(
            self._tables,
            lock_timeout_s=LOCK_TIMEOUT_S,
            write_lock_key=self._write_lock_key,
            channel=self.channel,
        )

    def check_durability(self) -> None:
        """Refuse (or warn about) settings under which acknowledged commits can be lost."""
        with self._cursor() as cur:
            cur.execute(
                "SELECT current_setting('synchronous_commit') AS sync,"
                " current_setting('fsync') AS fsync"
            )
            row = cur.fetchone()
        assert row is not None
        sync, fsync = row["sync"], row["fsync"]
        if sync == "off" or fsync == "off":
            message = (
                f"PostgreSQL has synchronous_commit={sync}, fsync={fsync}: acknowledged "
                "payments could be lost in a crash"
            )
            if self.require_durable:
                raise StoreError(message + "; fix the server or open with durability='allow'")
            log.warning("ledger.durability", detail=message)

    def load_streams(
        self, stream_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[StoredEvent, StoredEvent]]:
        """The first and latest event of each stream that exists."""
        return self.read((), stream_ids)[1]

    def lookup_keys(self, key_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, KeyRecord]:
        """The idempotency records among ``key_ids`` (key rows and entries)."""
        return self.read(key_ids, ())[0]

    def read(
        self,
        key_ids: Collection[uuid.UUID],
        stream_ids: Collection[uuid.UUID],
        known: Mapping[uuid.UUID, Known] | None = None,
    ) -> tuple[dict[uuid.UUID, KeyRecord], dict[uuid.UUID, tuple[StoredEvent, StoredEvent]]]:
        """Key records and stream heads, in one statement."""
        if not key_ids and not stream_ids and not known:
            return {}, {}
        return self._reading(lambda cur: self.read_with(cur, key_ids, stream_ids, known))

    def read_with(
        self,
        cur: psycopg.Cursor[Any],
        key_ids: Collection[uuid.UUID],
        stream_ids: Collection[uuid.UUID],
        known: Mapping[uuid.UUID, Known] | None = None,
    ) -> tuple[dict[uuid.UUID, KeyRecord], dict[uuid.UUID, tuple[StoredEvent, StoredEvent]]]:
        """Run the read statement on the given cursor's connection (its transaction)."""
        known = known or {}
        streams, versions = read_streams(stream_ids, known)
        with cur.connection.cursor(row_factory=tuple_row) as rows:
            rows.execute(
                self._select_read,
                {"keys": list(key_ids), "streams": streams, "versions": versions},
                prepare=True,
            )
            return read_rows(rows, known)

    def read_statement(self, conn: Any) -> bytes:
        """The read with numbered parameters (``$1`` the key ids, ``$2`` the stream
        ids, both ``uuid[]``, ``$3`` the versions known of them, ``int8[]``), rendered
        for ``conn`` (prepared by name on the ledger's own connections, see
        :mod:`.pg_wire`)."""
        return self._read_template.format(
            keys=SQL("$1::uuid[]"),
            streams=SQL("$2"),
            versions=SQL("$3"),
            topic=Literal(TOPIC_ENTRY),
            **self._tables,
        ).as_bytes(conn)

    def append(self, batch: WriteBatch) -> Sequence[int]:
        """Write the batch in one transaction under the event table's lock.

        Batches of up to :data:`FUNCTION_EVENTS_MAX` events are one call of the append
        function (one statement, its own transaction); larger ones lock, check and
        stream the events with binary COPY.
        """
        with self._translated(conflicts=True), self.datastore.get_connection() as conn:
            if self.fits_one_call(batch):
                self._append_call_once(conn, batch)
            else:
                self._append_copy(conn, batch)
        return []

    def _append_call_once(self, conn: psycopg.Connection[Any], batch: WriteBatch) -> None:
        if conn not in self._adapted:
            adapt(conn)
            self._adapted.add(conn)
        query = self._append_call_bytes
        if query is None:
            query = self._append_call_bytes = self.append_query(conn)
        with conn.cursor() as cur:
            try:
                cur.execute(query, self.append_params(batch), prepare=True)
            except psycopg.errors.UndefinedFunction as e:
                raise self.missing_function_error() from e
            row = cur.fetchone()
        assert row is not None
        if not next(iter(row.values())):
            raise AppendConflict(
                "a concurrent writer changed a stream or key this batch depends on"
            )

    def fits_one_call(self, batch: WriteBatch) -> bool:
        """Whether ``batch`` goes in one call of the append function (else COPY)."""
        return len(batch.events) <= FUNCTION_EVENTS_MAX

    def append_query(self, conn: Any) -> bytes:
        """The append function's call, rendered for ``conn`` (sync or async)."""
        return self._append_call.as_bytes(conn)

    def append_statement(self, conn: Any) -> bytes:
        """The append function's call with numbered parameters, rendered for ``conn``
        (prepared by name on the ledger's own connections, see :mod:`.pg_wire`)."""
        function = SQL("{schema}.{fn}").format(fn=Identifier(APPEND_FUNCTION), **self._tables)
        return append_call(function).as_bytes(conn)

    def missing_function_error(self) -> StoreError:
        """The error for a database without the ledger's append function."""
        return StoreError(
            f"PostgreSQL store {self.url} lacks the ledger's append function "
            f"{APPEND_FUNCTION} in schema {self.schema!r}: create the schema (ledger "
            "init, or open with create_schema=True)"
        )

    def loop_appender(self) -> PostgresLoopAppender:
        """An appender for the running asyncio loop (see :mod:`.pg_appenders`)."""
        return PostgresLoopAppender(self)

    def committer_connection(self) -> PostgresCommitterConnection:
        """A connection for the group commit's thread (see :mod:`.pg_appenders`)."""
        return PostgresCommitterConnection(self)

    def append_params(self, batch: WriteBatch) -> tuple[Any, ...]:
        """The append function's parameters for ``batch`` (binary arrays)."""
        events, opened, keys = batch.events, batch.holds_opened, batch.keys
        # Every expectation, created streams too: the function then answers a lost
        # race with false, where the primary key would put an ERROR in the server log.
        expect = batch.expect_versions
        return (
            UuidArray.of(batch.entry_keys),
            UuidArray.of(expect),
            Int8Array.of(expect.values()),
            UuidArray.of(cast(list[uuid.UUID], [e.originator_id for e in events])),
            Int8Array.of([e.originator_version for e in events]),
            TextArray.of([e.topic for e in events]),
            ByteaArray.of([e.state for e in events]),
            UuidArray.of([k.key_id for k in keys]),
            TextArray.of([k.key for k in keys]),
            TextArray.of([k.fingerprint for k in keys]),
            ByteaArray.of([k.outcome for k in keys]),
            UuidArray.of([h for h, _ in opened]),
            TimestamptzArray.of([at for _, at in opened]),
            UuidArray.of(batch.holds_closed),
        )

    def _write_lock_sql(self) -> list[Composed]:
        """The write lock, taken first by every transaction that appends.

        Writers serialise on a transaction-level advisory lock (one per schema), held
        to the commit: log positions become visible in commit order, as eventsourcing's
        EXCLUSIVE table lock made them. That table lock also conflicted with
        autovacuum's: each time autovacuum visited the event table, every writer
        stalled until PostgreSQL cancelled the vacuum after ``deadlock_timeout`` (1 s;
        measured: payments p99 860 ms in one benchmark run of two), the vacuum never
        finished, and an anti-wraparound vacuum, which is not cancelled, would have
        held the writers for its whole run. The advisory lock does not conflict with
        vacuum or analyze. The ROW EXCLUSIVE table lock beside it (what an INSERT
        takes anyway) keeps writers of earlier versions, which take the EXCLUSIVE
        lock, out while this transaction writes, and waits for theirs: a rolling
        upgrade stays serialised.
        """
        return [
            SQL("SET LOCAL lock_timeout = {0}").format(Literal(f"{LOCK_TIMEOUT_S}s")),
            SQL("SELECT pg_advisory_xact_lock({0})").format(Literal(self._write_lock_key)),
            SQL("LOCK TABLE {schema}.stored_events IN ROW EXCLUSIVE MODE").format(**self._tables),
        ]

    def _append_copy(self, conn: psycopg.Connection[Any], batch: WriteBatch) -> None:
        with conn.transaction(), conn.cursor() as cur:
            for statement in self._write_lock_sql():
                cur.execute(statement, prepare=True)
            self.write_locked(cur, batch)

    def write_locked(self, cur: psycopg.Cursor[Any], batch: WriteBatch) -> None:
        """Check, then write, in a transaction that holds the writers' lock."""
        self._check(cur, batch)
        if batch.events:
            with cur.copy(self._copy_events) as copy:
                copy.set_types(["uuid", "int8", "text", "bytea"])
                for e in batch.events:
                    copy.write_row((e.originator_id, e.originator_version, e.topic, e.state))
        if batch.keys:
            cur.execute(self._insert_keys, _key_columns(batch), prepare=True)
        self._write_holds(cur, batch)
        cur.execute(self._notify, prepare=True)

    @contextmanager
    def exclusive(self) -> Iterator[PostgresSession]:
        """Hold the writers' lock for a whole read-decide-append cycle.

        The fallback after repeated optimistic conflicts: other writers wait (up to
        their lock timeout) instead of invalidating this one's reads, so a hot
        account cannot starve a writer.
        """
        with (
            self._translated(conflicts=True),
            self.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor() as cur,
        ):
            for statement in self._write_lock_sql():
                cur.execute(statement, prepare=True)
            yield PostgresSession(self, cur)

    def _check(self, cur: psycopg.Cursor[Any], batch: WriteBatch) -> None:
        """Under the lock: every stream is still at the version the decision saw, and no
        key of an entry written here has a row (a concurrent rejection)."""
        expect = batch.expectations_to_check()
        if not expect and not batch.entry_keys:
            return
        cur.execute(self._select_check, (list(expect), batch.entry_keys), prepare=True)
        current: dict[uuid.UUID, int] = {}
        for row in cur.fetchall():
            if row["kind"] == "key":
                raise AppendConflict(f"key {row['id']} was recorded by a concurrent writer")
            current[row["id"]] = row["v"] or 0
        for sid, version in expect.items():
            if current.get(sid, 0) != version:
                raise AppendConflict(f"stream {sid} is not at version {version} any more")

    def _write_holds(self, cur: psycopg.Cursor[Any], batch: WriteBatch) -> None:
        if batch.holds_opened:
            cur.execute(
                self._insert_holds,
                ([h for h, _ in batch.holds_opened], [at for _, at in batch.holds_opened]),
                prepare=True,
            )
        if batch.holds_closed:
            cur.execute(self._delete_holds, (list(batch.holds_closed),), prepare=True)

    def due_holds(self, now: datetime, limit: int) -> list[uuid.UUID]:
        """Open holds due at ``now``, earliest first."""

        def due(cur: psycopg.Cursor[Any]) -> list[uuid.UUID]:
            cur.execute(self._select_due, (now, limit), prepare=True)
            return [row["hold_id"] for row in cur.fetchall()]

        return self._reading(due)

    def read_log(self, after: int, limit: int) -> Sequence[Notification]:
        """Events after position ``after``, in log order (a dropped connection is
        tried again, as eventsourcing's reader does)."""
        read: list[Notification] = self._call(lambda: self._read_log(after, limit))
        return read

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def _read_log(self, after: int, limit: int) -> list[Notification]:
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as cur,
        ):
            cur.execute(self._select_log, (after, limit), prepare=True)
            return [notification(*row) for row in cur]

    def read_stream_version(self, stream_id: uuid.UUID, version: int) -> bytes | None:
        """The state of one event of one stream, or None."""
        events = self._call(
            lambda: self.recorder.select_events(stream_id, gt=version - 1, lte=version)
        )
        return bytes(events[0].state) if events else None

    def max_position(self) -> int:
        """The highest log position (0 for an empty log)."""
        position: int | None = self._call(self.recorder.max_notification_id)
        return position or 0

    def close(self) -> None:
        """Close the connection pool."""
        self.datastore.close()

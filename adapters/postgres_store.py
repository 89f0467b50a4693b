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
"""

from __future__ import annotations

import hashlib
import re
import uuid
import weakref
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar, cast

import psycopg
from eventsourcing.persistence import (
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

from .pg_appenders import (
    PostgresCommitterConnection,
    PostgresLoopAppender,
    direct_connection_kwargs,
)
from .pg_arrays import ByteaArray, Int8Array, TextArray, TimestamptzArray, UuidArray, adapt
from .pg_conninfo import Conninfo, parse_conninfo
from .pg_datastore import Datastore, SessionLost
from .pg_guest import PostgresApplicationRecorder
from .pg_wire import append_call, read_rows, read_streams

__all__ = ["PostgresEventStore", "parse_postgres_url"]

log = get_logger(__name__)
T = TypeVar("T")

#: Seconds a writer waits for the event table lock before the attempt is retried.
LOCK_TIMEOUT_S = 10
#: Appends with up to this many events are one call of the append function; larger
#: ones lock, check and COPY in several statements.
FUNCTION_EVENTS_MAX = 2000
#: The type a ``CREATE TYPE`` statement of eventsourcing's schema creates.
_CREATE_TYPE = re.compile(r'\s*CREATE TYPE\s+((?:"(?:[^"]|"")+"\.)?"(?:[^"]|"")+")')
#: The append function's name; a new version gets a new name, so that processes of an
#: older release keep theirs while a newer one is rolled out.
APPEND_FUNCTION = "ledger_append_v2"
_SCHEMA_LOCK_KEY = 0x1ED6E5  # advisory lock serialising schema creation across processes


def _key_columns(batch: WriteBatch) -> tuple[list[Any], ...]:
    return (
        [k.key_id for k in batch.keys],
        [k.key for k in batch.keys],
        [k.fingerprint for k in batch.keys],
        [k.outcome for k in batch.keys],
    )


def parse_postgres_url(url: str) -> dict[str, Any]:
    """Connection settings from a ``postgresql://`` URL (or a libpq keyword string),
    parsed by libpq itself (through psycopg): every parameter is kept, an unknown one
    is refused with :class:`~ledger.errors.StoreError`."""
    return _settings(parse_conninfo(url))


def _settings(info: Conninfo) -> dict[str, Any]:
    params = dict(info.params)  # only what the URL gives: libpq fills in the rest
    if not params.get("dbname"):
        raise StoreError(f"PostgreSQL URL {info.shown} must name a database")
    return params


def _lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _probe(info: Conninfo, settings: dict[str, Any]) -> str:
    """Connect once, directly, so that a refused first connection reports the
    server's own reason (authentication failed, connection refused, no such database,
    SSL required) at once rather than as a pool timeout; the ledger's schema (see
    :func:`_ledger_schema`)."""
    try:
        with psycopg.connect(**direct_connection_kwargs(settings)) as conn:
            return _ledger_schema(conn, info.shown)
    except psycopg.OperationalError as e:
        reason = info.redact(" ".join(str(e).split()))
        raise StoreUnavailable(f"cannot connect to PostgreSQL at {info.shown}: {reason}") from None
    except psycopg.Error as e:  # a setting psycopg itself refuses (connect_timeout=x)
        reason = info.redact(" ".join(str(e).split()))
        raise StoreError(f"PostgreSQL URL {info.shown}: {reason}") from None


def _ledger_schema(conn: psycopg.Connection[Any], shown: str) -> str:
    """The schema the ledger lives in: the connection's ``current_schema()``.

    Refused with :class:`~ledger.errors.StoreError`: a ``search_path`` that names no
    schema that exists (the tables would have nowhere to go), a system schema, and a
    schema that holds the idempotency keys of a ledger whose events earlier releases
    put in ``public.stored_events`` (opening it here would show an empty ledger).
    """
    row = conn.execute(
        "SELECT current_schema(), current_setting('search_path'),"
        " to_regclass(quote_ident(current_schema()) || '.stored_events') IS NOT NULL,"
        " to_regclass(quote_ident(current_schema()) || '.ledger_keys') IS NOT NULL,"
        " to_regclass('public.stored_events') IS NOT NULL"
    ).fetchone()
    assert row is not None
    schema, search_path, has_events, has_keys, public_events = row
    if schema is None:
        raise StoreError(
            f"PostgreSQL store {shown}: no schema of the search_path ({search_path}) "
            "exists, so the ledger has no schema to live in: create the schema "
            "(CREATE SCHEMA ...) or set a search_path whose first schema exists"
        )
    if schema != schema.strip():  # eventsourcing strips it: its tables would go elsewhere
        raise StoreError(
            f"PostgreSQL store {shown}: the schema {schema!r} begins or ends with "
            "white space: name the ledger's schema without it"
        )
    if schema.startswith("pg_") or schema == "information_schema":
        raise StoreError(
            f"PostgreSQL store {shown}: the search_path ({search_path}) puts the ledger "
            f"in the system schema {schema!r}: set a search_path whose first schema is "
            "the ledger's"
        )
    if schema != "public" and has_keys and not has_events and public_events:
        raise StoreError(
            f"PostgreSQL store {shown}: schema {schema!r} holds ledger_keys of a ledger "
            "whose events an earlier release kept in public.stored_events; a ledger now "
            f"lives wholly in its schema ({schema!r} here, from the search_path "
            f"{search_path}): move public's ledger tables, types and functions into "
            f"{schema!r} (ALTER ... SET SCHEMA; not if another schema's keys share them), "
            "or open with search_path=public"
        )
    return str(schema)


#: The longest channel name PostgreSQL keeps (NAMEDATALEN - 1 bytes).
_CHANNEL_MAX = 63


def notify_channel(schema: str) -> str:
    """The NOTIFY channel of the ledger in ``schema``: ``stored_events`` in ``public``
    (the channel of earlier releases and of eventsourcing, so listeners keep hearing),
    ``<schema>.stored_events`` in another, or a digest of the schema's name where that
    is too long for a channel."""
    if schema == "public":
        return "stored_events"
    channel = f"{schema}.stored_events"
    if len(channel.encode()) <= _CHANNEL_MAX:
        return channel
    return f"ledger_{hashlib.sha256(schema.encode()).hexdigest()[:40]}.stored_events"


class PostgresEventStore:
    """An :class:`~ledger.store.EventStore` in a PostgreSQL database."""

    def __init__(self, url: str, *, pool_size: int = 2, require_durable: bool = True) -> None:
        info = parse_conninfo(url)
        self.url = info.shown
        self.settings = _settings(info)
        #: The schema every object of this ledger lives in (see the module's docs).
        self.schema = _probe(info, self.settings)
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
        self._write_lock_key = _lock_key(f"ledger-write:{self.schema}")
        # Array parameters go in binary (%b): psycopg dumps a list of 10,000 UUIDs as
        # text element by element in Python (19 ms, holding the GIL that the deciding
        # thread needs), in binary in 3 ms. A batch sends two UUIDs per command.
        # Latest version per stream: one backward primary-key probe each (max() on the
        # index), whatever the length of the stream.
        self._select_check = SQL(
            "SELECT 'stream' AS kind, x.id AS id, (SELECT max(s.originator_version)"
            " FROM {schema}.stored_events s WHERE s.originator_id = x.id) AS v"
            " FROM unnest(%b::uuid[]) AS x(id)"
            " UNION ALL SELECT 'key', key_id, 0 FROM {schema}.ledger_keys WHERE key_id = ANY(%b)"
        ).format(**self._tables)
        self._copy_events = SQL(
            "COPY {schema}.stored_events (originator_id, originator_version, topic, state)"
            " FROM STDIN (FORMAT BINARY)"
        ).format(**self._tables)
        # One statement for everything a decision reads (each statement costs the
        # client more CPU than its round trip): key rows (kind 0), entries recorded
        # under the keys (kind 1: their first event), and the first and latest event of
        # each stream (kind 2: two primary-key probes per stream, however long it is;
        # in no particular order, which saves the server a sort: 133 -> 110 us of its
        # CPU for 8 streams, measured). A stream the reader knows at a version (> 0)
        # costs one probe, and a row only if its latest version is another (newer,
        # or older should the reader's cache be ahead of the store): 77 us for 8
        # (measured for a first form that returned newer versions only).
        self._read_template = SQL(
            "SELECT 0 AS kind, key_id AS id, 0::int8 AS v, key AS a, fingerprint AS b,"
            " outcome AS state FROM {schema}.ledger_keys WHERE key_id = ANY({keys})"
            " UNION ALL SELECT 1, originator_id, 1, NULL, NULL, state"
            " FROM {schema}.stored_events WHERE originator_id = ANY({keys})"
            " AND originator_version = 1 AND topic = {topic}"
            " UNION ALL (SELECT 2, e.originator_id, e.originator_version, e.topic, NULL, e.state"
            " FROM unnest({streams}::uuid[], {versions}::int8[]) AS x(id, known)"
            " CROSS JOIN LATERAL ("
            " (SELECT * FROM {schema}.stored_events f"
            "  WHERE f.originator_id = x.id AND f.originator_version = 1 AND x.known = 0)"
            " UNION ALL"
            " (SELECT * FROM (SELECT * FROM {schema}.stored_events l"
            "  WHERE l.originator_id = x.id AND (l.originator_version > 1 OR x.known > 0)"
            "  ORDER BY l.originator_version DESC LIMIT 1) l"
            "  WHERE l.originator_version <> x.known)) e)"
        )
        self._select_read = self._read_template.format(
            keys=Placeholder("keys", PyFormat.BINARY),
            streams=Placeholder("streams", PyFormat.BINARY),
            versions=Placeholder("versions", PyFormat.BINARY),
            topic=Literal(TOPIC_ENTRY),
            **self._tables,
        )
        self._notify = SQL("NOTIFY {0}").format(Identifier(self.channel))
        # The log in position order, as plain rows (eventsourcing's reader makes a
        # dict per row and a Notification through its __init__: a quarter of a
        # read-model rebuild's CPU, measured).
        self._select_log = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM {schema}.stored_events WHERE notification_id > %s"
            " ORDER BY notification_id LIMIT %s"
        ).format(**self._tables)
        # The append's parameters are arrays built in one pass (pg_arrays), on the
        # connections adapted for them; the statement is rendered once.
        self._append_call = SQL(
            "SELECT {schema}.{fn}(%b, %b, %b, %b, %b, %b, %b, %b, %b, %b, %b, %b, %b, %b)"
        ).format(fn=Identifier(APPEND_FUNCTION), **self._tables)
        self._append_call_bytes: bytes | None = None
        self._adapted: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()
        self._insert_keys = SQL(
            "INSERT INTO {schema}.ledger_keys (key_id, key, fingerprint, outcome)"
            " SELECT * FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::bytea[])"
        ).format(**self._tables)
        self._insert_holds = SQL(
            "INSERT INTO {schema}.ledger_open_holds (hold_id, expires_at)"
            " SELECT * FROM unnest(%b::uuid[], %b::timestamptz[])"
        ).format(**self._tables)
        self._delete_holds = SQL(
            "DELETE FROM {schema}.ledger_open_holds WHERE hold_id = ANY(%b)"
        ).format(**self._tables)
        self._select_due = SQL(
            "SELECT hold_id FROM {schema}.ledger_open_holds WHERE expires_at <= %s"
            " ORDER BY expires_at LIMIT %s"
        ).format(**self._tables)

    def _append_function_ddl(self) -> Composed:
        """The append as one server-side call: lock, check, write, notify.

        One statement instead of eight (lock timeout, lock, check, events, keys,
        holds, notify, commit): each statement costs the client ~0.1-0.2 ms of CPU
        (measured here; more than the round trip), and the online path appends once
        per group. The write lock (see :meth:`_write_lock_sql`) is held to the commit,
        so log positions still become visible in commit order. Returns false,
        writing nothing, if a key of an entry written here has a row (a concurrent
        rejection) or a stream the decision read moved on; a version or key written
        twice fails on a primary key. Every stream the decision read is checked,
        written or not: a stream written here is also at the version read (its
        primary key alone would not see a version missing below the one written, as
        when a process's cache were ahead of the store).
        """
        return SQL(
            "CREATE OR REPLACE FUNCTION {schema}.{fn}("
            " entry_keys uuid[], expect_ids uuid[], expect_versions int8[],"
            " ev_ids uuid[], ev_versions int8[], ev_topics text[], ev_states bytea[],"
            " key_ids uuid[], key_texts text[], key_prints text[], key_outcomes bytea[],"
            " opened_ids uuid[], opened_at timestamptz[], closed_ids uuid[])"
            " RETURNS boolean LANGUAGE plpgsql AS $fn$"
            " BEGIN"
            "  PERFORM set_config('lock_timeout', {timeout}, true);"
            "  PERFORM pg_advisory_xact_lock({lock_key});"
            "  LOCK TABLE {schema}.stored_events IN ROW EXCLUSIVE MODE;"
            "  IF EXISTS (SELECT 1 FROM {schema}.ledger_keys WHERE key_id = ANY(entry_keys))"
            "   OR EXISTS (SELECT 1 FROM unnest(expect_ids, expect_versions) AS x(id, v)"
            "    WHERE coalesce((SELECT max(s.originator_version) FROM {schema}.stored_events s"
            "     WHERE s.originator_id = x.id), 0) <> x.v) THEN"
            "   RETURN false;"
            "  END IF;"
            "  INSERT INTO {schema}.stored_events"
            "   (originator_id, originator_version, topic, state)"
            "   SELECT * FROM unnest(ev_ids, ev_versions, ev_topics, ev_states);"
            "  IF cardinality(key_ids) > 0 THEN"
            "   INSERT INTO {schema}.ledger_keys (key_id, key, fingerprint, outcome)"
            "    SELECT * FROM unnest(key_ids, key_texts, key_prints, key_outcomes);"
            "  END IF;"
            "  IF cardinality(opened_ids) > 0 THEN"
            "   INSERT INTO {schema}.ledger_open_holds (hold_id, expires_at)"
            "    SELECT * FROM unnest(opened_ids, opened_at);"
            "  END IF;"
            "  IF cardinality(closed_ids) > 0 THEN"
            "   DELETE FROM {schema}.ledger_open_holds WHERE hold_id = ANY(closed_ids);"
            "  END IF;"
            "  PERFORM pg_notify({channel}, '');"
            "  RETURN true;"
            " END $fn$"
        ).format(
            fn=Identifier(APPEND_FUNCTION),
            timeout=Literal(f"{LOCK_TIMEOUT_S}s"),
            lock_key=Literal(self._write_lock_key),
            channel=Literal(self.channel),
            **self._tables,
        )

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
                conn.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK_KEY,))
                try:
                    self._call(lambda: self._create_recorder_tables(conn))
                    with conn.transaction():
                        for statement in self._side_tables_ddl():
                            conn.execute(statement)
                        conn.execute(self._append_function_ddl())
                finally:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK_KEY,))
        except psycopg.OperationalError as e:
            raise StoreUnavailable(f"PostgreSQL store {self.url} is unavailable: {e}") from e
        except psycopg.Error as e:  # no right to create in the schema, say
            raise StoreError(
                f"PostgreSQL store {self.url} cannot create the ledger's tables in schema "
                f"{self.schema!r}: {e}"
            ) from e
        self.check_durability()

    def _side_tables_ddl(self) -> list[Composed]:
        """The idempotency keys and the open-holds index, in the ledger's schema."""
        return [
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.ledger_keys ("
                " key_id uuid PRIMARY KEY, key text NOT NULL,"
                " fingerprint text NOT NULL, outcome bytea NOT NULL)"
            ).format(**self._tables),
            SQL(
                "CREATE TABLE IF NOT EXISTS {schema}.ledger_open_holds ("
                " hold_id uuid PRIMARY KEY, expires_at timestamptz)"
            ).format(**self._tables),
            SQL(
                "CREATE INDEX IF NOT EXISTS ledger_open_holds_due"
                " ON {schema}.ledger_open_holds (expires_at) WHERE expires_at IS NOT NULL"
            ).format(**self._tables),
        ]

    def _create_recorder_tables(self, conn: psycopg.Connection[Any]) -> None:
        """The event table and its types, as eventsourcing's ``create_table`` makes
        them, but without trying a composite type that already exists: PostgreSQL has
        no ``CREATE TYPE IF NOT EXISTS``, and the failed attempt puts an ERROR in the
        server's log at every start of every process (alerts watch for those)."""
        statements = self.recorder.sql_create_statements
        types = [s for s in statements if "CREATE TYPE" in s.as_string(conn)]
        if not all(self._type_exists(conn, s.as_string(conn)) for s in types):
            self.recorder.create_table()  # the first time (or a type added by an upgrade)
            return
        with self.datastore.transaction(commit=True) as cur:
            for statement in statements:
                if statement not in types:
                    cur.execute(statement, prepare=False)
        self.datastore.register_type_adapters()

    @staticmethod
    def _type_exists(conn: psycopg.Connection[Any], create_type: str) -> bool:
        match = _CREATE_TYPE.match(create_type)
        if match is None:  # a statement of a form not seen before: let it run
            return False
        row = conn.execute("SELECT to_regtype(%s) IS NOT NULL", (match.group(1),)).fetchone()
        return bool(row and row[0])

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


class PostgresSession:
    """Reads and one append inside a transaction that holds the writers' lock."""

    def __init__(self, store: PostgresEventStore, cur: psycopg.Cursor[Any]) -> None:
        self.store = store
        self.cur = cur

    def read(
        self,
        key_ids: Collection[uuid.UUID],
        stream_ids: Collection[uuid.UUID],
        known: Mapping[uuid.UUID, Known] | None = None,
    ) -> tuple[dict[uuid.UUID, KeyRecord], dict[uuid.UUID, tuple[StoredEvent, StoredEvent]]]:
        """As :meth:`PostgresEventStore.read`, under the lock."""
        if not key_ids and not stream_ids and not known:
            return {}, {}
        return self.store.read_with(self.cur, key_ids, stream_ids, known)

    def load_streams(
        self, stream_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[StoredEvent, StoredEvent]]:
        """As :meth:`PostgresEventStore.load_streams`, under the lock."""
        return self.read((), stream_ids)[1]

    def append(self, batch: WriteBatch) -> Sequence[int]:
        """As :meth:`PostgresEventStore.append`, in the locked transaction."""
        self.store.write_locked(self.cur, batch)
        return []

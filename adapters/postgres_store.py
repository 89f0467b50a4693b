"""PostgreSQL event store (``postgresql://user:password@host:port/dbname``).

Built on eventsourcing's PostgreSQL datastore (psycopg 3 connection pool) and
application recorder (``stored_events`` table, composite-type bulk insert, LISTEN/NOTIFY
channel). Each append is one pipelined transaction: it takes the recorder's EXCLUSIVE
table lock (so log positions become visible in commit order and a tailing reader never
skips one), checks the versions of streams the decision only read, bulk-inserts the
events, the idempotency records and the open-holds index, and commits. Primary keys on
(stream, version) and on the key id turn every race into a clean
:class:`~ledger.store.AppendConflict`.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
import structlog
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg.sql import SQL, Identifier, Literal

from ledger.errors import StoreError, StoreUnavailable
from ledger.events import TOPIC_ENTRY, key_record_from_entry
from ledger.store import AppendConflict, KeyRecord, WriteBatch

__all__ = ["PostgresEventStore", "parse_postgres_url"]

log = structlog.get_logger("ledger")

#: Seconds a writer waits for the event table lock before the attempt is retried.
LOCK_TIMEOUT_S = 10
#: Appends with up to this many events go in one pipelined round trip; larger ones COPY.
PIPELINE_EVENTS_MAX = 200
_SCHEMA_LOCK_KEY = 0x1ED6E5  # advisory lock serialising schema creation across processes


def parse_postgres_url(url: str) -> dict[str, Any]:
    """Connection settings from a ``postgresql://`` URL."""
    parts = urlsplit(url)
    dbname = parts.path.lstrip("/")
    if not dbname or not parts.hostname:
        raise StoreError(f"PostgreSQL URL {_redact(url)} must name a host and a database")
    return {
        "dbname": unquote(dbname),
        "host": parts.hostname,
        "port": parts.port or 5432,
        "user": unquote(parts.username or "postgres"),
        "password": unquote(parts.password or ""),
    }


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


class PostgresEventStore:
    """An :class:`~ledger.store.EventStore` in a PostgreSQL database."""

    def __init__(self, url: str, *, pool_size: int = 2, require_durable: bool = True) -> None:
        self.url = _redact(url)
        self.settings = parse_postgres_url(url)
        self.require_durable = require_durable
        self.datastore = PostgresDatastore(
            **self.settings,
            pool_size=pool_size,
            max_overflow=2,
            lock_timeout=LOCK_TIMEOUT_S,
            connect_timeout=5,
            pre_ping=True,
        )
        self.recorder = self._call(lambda: PostgresApplicationRecorder(self.datastore))
        self._tables = {"schema": Identifier(self.datastore.schema)}
        self._select_check = SQL(
            "SELECT 'stream' AS kind, originator_id AS id, max(originator_version) AS v"
            " FROM {schema}.stored_events WHERE originator_id = ANY(%s) GROUP BY originator_id"
            " UNION ALL SELECT 'key', key_id, 0 FROM ledger_keys WHERE key_id = ANY(%s)"
        ).format(**self._tables)
        self._copy_events = SQL(
            "COPY {schema}.stored_events (originator_id, originator_version, topic, state)"
            " FROM STDIN (FORMAT BINARY)"
        ).format(**self._tables)
        self._select_keys = SQL(
            "SELECT key_id, key, fingerprint, outcome FROM ledger_keys WHERE key_id = ANY(%s)"
        )
        self._select_entries = SQL(
            "SELECT originator_id, topic, state FROM {schema}.stored_events"
            " WHERE originator_id = ANY(%s) AND originator_version = 1 AND topic = {topic}"
        ).format(topic=Literal(TOPIC_ENTRY), **self._tables)
        self._notify = SQL("NOTIFY {0}").format(Identifier(self.recorder.channel_name))

    def _call(self, fn: Any) -> Any:
        try:
            return fn()
        except (OperationalError, InterfaceError) as e:
            raise StoreUnavailable(f"PostgreSQL store {self.url} is unavailable: {e}") from e
        except PersistenceError as e:
            raise StoreError(f"PostgreSQL store {self.url} failed: {e}") from e

    @contextmanager
    def _cursor(self) -> Iterator[psycopg.Cursor[Any]]:
        try:
            with self.datastore.get_connection() as conn, conn.cursor() as cur:
                yield cur
        except (OperationalError, InterfaceError) as e:
            raise StoreUnavailable(f"PostgreSQL store {self.url} is unavailable: {e}") from e
        except PersistenceError as e:
            raise StoreError(f"PostgreSQL store {self.url} failed: {e}") from e

    def create_schema(self) -> None:
        """Create tables once; concurrent callers wait on an advisory lock."""
        try:
            with psycopg.connect(**self.settings, autocommit=True, connect_timeout=5) as conn:
                conn.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK_KEY,))
                try:
                    self._call(self.recorder.create_table)
                    with conn.transaction():
                        conn.execute(
                            "CREATE TABLE IF NOT EXISTS ledger_keys ("
                            " key_id uuid PRIMARY KEY, key text NOT NULL,"
                            " fingerprint text NOT NULL, outcome bytea NOT NULL)"
                        )
                        conn.execute(
                            "CREATE TABLE IF NOT EXISTS ledger_open_holds ("
                            " hold_id uuid PRIMARY KEY, expires_at timestamptz)"
                        )
                        conn.execute(
                            "CREATE INDEX IF NOT EXISTS ledger_open_holds_due"
                            " ON ledger_open_holds (expires_at) WHERE expires_at IS NOT NULL"
                        )
                finally:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK_KEY,))
        except psycopg.OperationalError as e:
            raise StoreUnavailable(f"PostgreSQL store {self.url} is unavailable: {e}") from e
        self.check_durability()

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
        found: dict[uuid.UUID, tuple[StoredEvent, StoredEvent]] = {}
        if not stream_ids:
            return found
        query = SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state"
            " FROM {schema}.stored_events e JOIN (SELECT originator_id, max(originator_version) v"
            " FROM {schema}.stored_events WHERE originator_id = ANY(%s) GROUP BY originator_id) m"
            " ON e.originator_id = m.originator_id"
            " AND (e.originator_version = 1 OR e.originator_version = m.v)"
            " ORDER BY e.originator_id, e.originator_version"
        ).format(**self._tables)
        with self._cursor() as cur:
            cur.execute(query, (list(stream_ids),))
            for row in cur.fetchall():
                event = StoredEvent(
                    row["originator_id"],
                    row["originator_version"],
                    row["topic"],
                    bytes(row["state"]),
                )
                sid = row["originator_id"]
                first = found.get(sid)
                found[sid] = (first[0] if first else event, event)
        return found

    def lookup_keys(self, key_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, KeyRecord]:
        """The idempotency records among ``key_ids`` (key rows and entries)."""
        if not key_ids:
            return {}
        ids = list(key_ids)
        found: dict[uuid.UUID, KeyRecord] = {}
        with self._cursor() as cur:
            cur.execute(self._select_keys, (ids,), prepare=True)
            for row in cur.fetchall():
                kid = row["key_id"]
                found[kid] = KeyRecord(kid, row["key"], row["fingerprint"], bytes(row["outcome"]))
            cur.execute(self._select_entries, (ids,), prepare=True)
            for row in cur.fetchall():
                event = StoredEvent(row["originator_id"], 1, row["topic"], bytes(row["state"]))
                found[row["originator_id"]] = key_record_from_entry(event)
        return found

    def append(self, batch: WriteBatch) -> Sequence[int]:
        """Write the batch in one transaction under the event table's lock.

        Small batches go in one pipelined round trip; large ones are streamed with
        binary COPY, several times faster than a bulk INSERT for thousands of rows.
        """
        try:
            with self.datastore.get_connection() as conn:
                if len(batch.events) <= PIPELINE_EVENTS_MAX:
                    self._append_pipelined(conn, batch)
                else:
                    self._append_copy(conn, batch)
        except AppendConflict:
            raise
        except (IntegrityError, psycopg.errors.UniqueViolation) as e:
            raise AppendConflict(str(e)) from e
        except (OperationalError, InterfaceError, psycopg.OperationalError) as e:
            raise StoreUnavailable(f"PostgreSQL store {self.url} is unavailable: {e}") from e
        except PersistenceError as e:
            raise StoreError(f"PostgreSQL store {self.url} failed: {e}") from e
        return []

    def _append_pipelined(self, conn: psycopg.Connection[Any], batch: WriteBatch) -> None:
        rec = self.recorder
        pg_events = [
            rec.construct_pg_stored_event(e.originator_id, e.originator_version, e.topic, e.state)
            for e in batch.events
        ]
        failure: BaseException | None = None
        with conn.pipeline() as pipeline, conn.transaction(), conn.cursor() as cur:
            try:
                rec._lock_table(cur)
                self._check(cur, batch, pipeline.sync)
                if pg_events:
                    cur.execute(rec.insert_events_statement, (pg_events,), prepare=False)
                self._write_side_tables(cur, batch)
                cur.execute(self._notify, prepare=False)
                pipeline.sync()
            except BaseException as e:  # re-raised outside the pipeline block
                failure = e
        if failure is not None:
            raise failure

    def _append_copy(self, conn: psycopg.Connection[Any], batch: WriteBatch) -> None:
        with conn.transaction(), conn.cursor() as cur:
            self.recorder._lock_table(cur)
            self._check(cur, batch, lambda: None)
            with cur.copy(self._copy_events) as copy:
                copy.set_types(["uuid", "int8", "text", "bytea"])
                for e in batch.events:
                    copy.write_row((e.originator_id, e.originator_version, e.topic, e.state))
            self._write_side_tables(cur, batch)
            cur.execute(self._notify)

    def _lock(self, cur: psycopg.Cursor[Any]) -> None:
        """Take the recorder's EXCLUSIVE lock on the event table (with its lock timeout).

        Nothing in an append is a server-side prepared statement: psycopg can lose
        track of one prepared inside a pipeline that fails, and a conflict is a normal
        outcome of an append.
        """
        for statement in self.recorder.lock_table_statements:
            cur.execute(statement, prepare=False)

    def _check(self, cur: psycopg.Cursor[Any], batch: WriteBatch, sync: Any) -> None:
        """Under the lock: streams only read are unchanged, applied keys have no row."""
        if not batch.expect_versions and not batch.entry_keys:
            return
        cur.execute(
            self._select_check, (list(batch.expect_versions), batch.entry_keys), prepare=False
        )
        sync()
        current: dict[uuid.UUID, int] = {}
        for row in cur.fetchall():
            if row["kind"] == "key":
                raise AppendConflict(f"key {row['id']} was recorded by a concurrent writer")
            current[row["id"]] = row["v"]
        for sid, version in batch.expect_versions.items():
            if current.get(sid, 0) != version:
                raise AppendConflict(f"stream {sid} moved on from version {version}")

    def _write_side_tables(self, cur: psycopg.Cursor[Any], batch: WriteBatch) -> None:
        if batch.keys:
            cur.execute(
                "INSERT INTO ledger_keys (key_id, key, fingerprint, outcome)"
                " SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::bytea[])",
                (
                    [k.key_id for k in batch.keys],
                    [k.key for k in batch.keys],
                    [k.fingerprint for k in batch.keys],
                    [k.outcome for k in batch.keys],
                ),
                prepare=False,
            )
        if batch.holds_opened:
            cur.execute(
                "INSERT INTO ledger_open_holds (hold_id, expires_at)"
                " SELECT * FROM unnest(%s::uuid[], %s::timestamptz[])",
                ([h for h, _ in batch.holds_opened], [at for _, at in batch.holds_opened]),
                prepare=False,
            )
        if batch.holds_closed:
            cur.execute(
                "DELETE FROM ledger_open_holds WHERE hold_id = ANY(%s)",
                (list(batch.holds_closed),),
                prepare=False,
            )

    def due_holds(self, now: datetime, limit: int) -> list[uuid.UUID]:
        """Open holds due at ``now``, earliest first."""
        with self._cursor() as cur:
            cur.execute(
                "SELECT hold_id FROM ledger_open_holds WHERE expires_at <= %s"
                " ORDER BY expires_at LIMIT %s",
                (now, limit),
            )
            return [row["hold_id"] for row in cur.fetchall()]

    def read_log(self, after: int, limit: int) -> Sequence[Notification]:
        """Events after position ``after``, in log order."""
        notifications: Sequence[Notification] = self._call(
            lambda: self.recorder.select_notifications(after, limit, inclusive_of_start=False)
        )
        return notifications

    def max_position(self) -> int:
        """The highest log position (0 for an empty log)."""
        position: int | None = self._call(self.recorder.max_notification_id)
        return position or 0

    def close(self) -> None:
        """Close the connection pool."""
        self.datastore.close()

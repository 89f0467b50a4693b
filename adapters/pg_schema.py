"""The PostgreSQL ledger's schema: where a ledger lives and what it is made of.

Which schema a store's ledger lives in (the connection's ``current_schema()``, probed
once when the store is opened, see :func:`probe`), the names that carry the schema's
(its NOTIFY channel, its writers' advisory lock), and the DDL that makes the
ledger's objects in it: the event table and its types (eventsourcing's, without
trying a type that exists), the idempotency keys and open-holds tables, and the
append function. :meth:`PostgresEventStore.create_schema
<ledger.adapters.postgres_store.PostgresEventStore.create_schema>` runs the DDL.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import psycopg
from psycopg.sql import SQL, Composed, Identifier, Literal

from ledger.errors import StoreError, StoreUnavailable

from .pg_appenders import direct_connection_kwargs
from .pg_conninfo import Conninfo
from .pg_datastore import Datastore
from .pg_guest import PostgresApplicationRecorder

__all__ = [
    "APPEND_FUNCTION",
    "SCHEMA_LOCK_KEY",
    "append_function_ddl",
    "create_recorder_tables",
    "lock_key",
    "notify_channel",
    "probe",
    "side_tables_ddl",
]

#: The type a ``CREATE TYPE`` statement of eventsourcing's schema creates.
_CREATE_TYPE = re.compile(r'\s*CREATE TYPE\s+((?:"(?:[^"]|"")+"\.)?"(?:[^"]|"")+")')
#: The append function's name; a new version gets a new name, so that processes of an
#: older release keep theirs while a newer one is rolled out.
APPEND_FUNCTION = "ledger_append_v2"
SCHEMA_LOCK_KEY = 0x1ED6E5  # advisory lock serialising schema creation across processes


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def probe(info: Conninfo, settings: dict[str, Any]) -> str:
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


def append_function_ddl(
    tables: dict[str, Identifier], *, lock_timeout_s: int, write_lock_key: int, channel: str
) -> Composed:
    """The append as one server-side call: lock, check, write, notify.

    One statement instead of eight (lock timeout, lock, check, events, keys,
    holds, notify, commit): each statement costs the client ~0.1-0.2 ms of CPU
    (measured here; more than the round trip), and the online path appends once
    per group. The write lock (see ``PostgresEventStore._write_lock_sql``) is held to
    the commit, so log positions still become visible in commit order. Returns false,
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
        timeout=Literal(f"{lock_timeout_s}s"),
        lock_key=Literal(write_lock_key),
        channel=Literal(channel),
        **tables,
    )


def side_tables_ddl(tables: dict[str, Identifier]) -> list[Composed]:
    """The idempotency keys and the open-holds index, in the ledger's schema."""
    return [
        SQL(
            "CREATE TABLE IF NOT EXISTS {schema}.ledger_keys ("
            " key_id uuid PRIMARY KEY, key text NOT NULL,"
            " fingerprint text NOT NULL, outcome bytea NOT NULL)"
        ).format(**tables),
        SQL(
            "CREATE TABLE IF NOT EXISTS {schema}.ledger_open_holds ("
            " hold_id uuid PRIMARY KEY, expires_at timestamptz)"
        ).format(**tables),
        SQL(
            "CREATE INDEX IF NOT EXISTS ledger_open_holds_due"
            " ON {schema}.ledger_open_holds (expires_at) WHERE expires_at IS NOT NULL"
        ).format(**tables),
    ]


def create_recorder_tables(
    recorder: PostgresApplicationRecorder, datastore: Datastore, conn: psycopg.Connection[Any]
) -> None:
    """The event table and its types, as eventsourcing's ``create_table`` makes
    them, but without trying a composite type that already exists: PostgreSQL has
    no ``CREATE TYPE IF NOT EXISTS``, and the failed attempt puts an ERROR in the
    server's log at every start of every process (alerts watch for those)."""
    statements = recorder.sql_create_statements
    types = [s for s in statements if "CREATE TYPE" in s.as_string(conn)]
    if not all(_type_exists(conn, s.as_string(conn)) for s in types):
        recorder.create_table()  # the first time (or a type added by an upgrade)
        return
    with datastore.transaction(commit=True) as cur:
        for statement in statements:
            if statement not in types:
                cur.execute(statement, prepare=False)
    datastore.register_type_adapters()


def _type_exists(conn: psycopg.Connection[Any], create_type: str) -> bool:
    match = _CREATE_TYPE.match(create_type)
    if match is None:  # a statement of a form not seen before: let it run
        return False
    row = conn.execute("SELECT to_regtype(%s) IS NOT NULL", (match.group(1),)).fetchone()
    return bool(row and row[0])

"""The statements the PostgreSQL event store runs, as templates over its schema.

Each is :class:`psycopg.sql.SQL` text naming the ledger's objects as
``{schema}.<name>``; the store renders them once for its schema when it is opened
(:class:`~ledger.adapters.postgres_store.PostgresEventStore`), and runs the rendered
statements. The DDL that makes those objects is in :mod:`.pg_schema`.

Array parameters go in binary (%b): psycopg dumps a list of 10,000 UUIDs as text
element by element in Python (19 ms, holding the GIL that the deciding thread
needs), in binary in 3 ms. A batch sends two UUIDs per command.
"""

from __future__ import annotations

from psycopg.sql import SQL

__all__ = [
    "APPEND_CALL",
    "COPY_EVENTS",
    "DELETE_HOLDS",
    "INSERT_HOLDS",
    "INSERT_KEYS",
    "READ_TEMPLATE",
    "SELECT_CHECK",
    "SELECT_DUE",
    "SELECT_LOG",
]

# Latest version per stream: one backward primary-key probe each (max() on the
# index), whatever the length of the stream.
SELECT_CHECK = SQL(
    "SELECT 'stream' AS kind, x.id AS id, (SELECT max(s.originator_version)"
    " FROM {schema}.stored_events s WHERE s.originator_id = x.id) AS v"
    " FROM unnest(%b::uuid[]) AS x(id)"
    " UNION ALL SELECT 'key', key_id, 0 FROM {schema}.ledger_keys WHERE key_id = ANY(%b)"
)
COPY_EVENTS = SQL(
    "COPY {schema}.stored_events (originator_id, originator_version, topic, state)"
    " FROM STDIN (FORMAT BINARY)"
)
# One statement for everything a decision reads (each statement costs the
# client more CPU than its round trip): key rows (kind 0), entries recorded
# under the keys (kind 1: their first event), and the first and latest event of
# each stream (kind 2: two primary-key probes per stream, however long it is;
# in no particular order, which saves the server a sort: 133 -> 110 us of its
# CPU for 8 streams, measured). A stream the reader knows at a version (> 0)
# costs one probe, and a row only if its latest version is another (newer,
# or older should the reader's cache be ahead of the store): 77 us for 8
# (measured for a first form that returned newer versions only).
# Its parameters are {keys}, {streams}, {versions} and the {topic} of an entry.
READ_TEMPLATE = SQL(
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
# The log in position order, as plain rows (eventsourcing's reader makes a
# dict per row and a Notification through its __init__: a quarter of a
# read-model rebuild's CPU, measured).
SELECT_LOG = SQL(
    "SELECT notification_id, originator_id, originator_version, topic, state"
    " FROM {schema}.stored_events WHERE notification_id > %s"
    " ORDER BY notification_id LIMIT %s"
)
# The append's parameters are arrays built in one pass (pg_arrays), on the
# connections adapted for them; the statement is rendered once. {fn} is the append
# function (pg_schema.APPEND_FUNCTION).
APPEND_CALL = SQL("SELECT {schema}.{fn}(%b, %b, %b, %b, %b, %b, %b, %b, %b, %b, %b, %b, %b, %b)")
INSERT_KEYS = SQL(
    "INSERT INTO {schema}.ledger_keys (key_id, key, fingerprint, outcome)"
    " SELECT * FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::bytea[])"
)
INSERT_HOLDS = SQL(
    "INSERT INTO {schema}.ledger_open_holds (hold_id, expires_at)"
    " SELECT * FROM unnest(%b::uuid[], %b::timestamptz[])"
)
DELETE_HOLDS = SQL("DELETE FROM {schema}.ledger_open_holds WHERE hold_id = ANY(%b)")
SELECT_DUE = SQL(
    "SELECT hold_id FROM {schema}.ledger_open_holds WHERE expires_at <= %s"
    " ORDER BY expires_at LIMIT %s"
)

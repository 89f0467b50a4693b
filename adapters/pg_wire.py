"""The append function's call, and the decision's read, sent through libpq directly
on the ledger's own connections (the group commit's thread, an event loop's
appender).

psycopg's cursor does for every statement what the append does not need: it looks up
a dumper per parameter, keeps a cache of prepared statements, and runs its result
handling through generators. The append is always the same statement with the same
14 binary arrays (see :mod:`.pg_arrays`, which already holds their bytes), so it is
prepared once per connection under its own name and sent with
``PQsendQueryPrepared``; the result is one boolean. Measured with 32 threads on one
ledger: 6,850-7,416 payments/s through the cursor, 7,515-7,705/s this way (the
committer thread's work per group is what bounds that row).

The read (the store's one statement for keys and stream heads) is prepared the same
way on the committer thread's connection, with its two ``uuid[]`` parameters and its
rows in binary form: a group reads its states whenever other processes write the
same accounts, and the cursor's result handling (a row maker, a loader per column)
was most of what that read cost the client.

Sending and collecting are separate steps, so a caller can do other work while the
server runs the statement. Errors come back as psycopg's exceptions (the same classes
a cursor raises), for the appenders to translate.
"""

from __future__ import annotations

import asyncio
import select
import uuid
from collections.abc import Collection, Generator, Iterable, Mapping
from typing import Any, cast

import psycopg
from eventsourcing.persistence import StoredEvent
from psycopg import errors as pg_errors
from psycopg import pq
from psycopg.sql import SQL, Composable

from ledger.events import TOPIC_ENTRY, key_record_from_entry
from ledger.store import KeyRecord, Known, stored_event

from .pg_arrays import PgArray

__all__ = [
    "APPEND_STATEMENT",
    "READ_STATEMENT",
    "ReadRow",
    "append_call",
    "collect",
    "collect_async",
    "collect_rows",
    "prepare",
    "prepare_async",
    "read_rows",
    "read_streams",
    "send",
    "send_read",
    "wait",
]

#: The prepared statement's name on each connection that sends it.
APPEND_STATEMENT = b"ledger_append"
#: The prepared read's name (see ``PostgresEventStore.read_statement``).
READ_STATEMENT = b"ledger_read"
#: Every parameter goes in binary form.
_FORMATS = [pq.Format.BINARY] * 14

#: A row of the read: kind (0 a key, 1 an entry recorded under a key, 2 a stream's
#: event), id, version, key or topic, fingerprint, state.
ReadRow = tuple[int, uuid.UUID, int, str | None, str | None, bytes]


def append_call(function: Composable) -> Composable:
    """``SELECT function($1, ..., $14)``: the append's call with numbered parameters."""
    args = ", ".join(f"${n}" for n in range(1, 15))
    return SQL("SELECT {fn}(" + args + ")").format(fn=function)


def prepare(pgconn: pq.abc.PGconn, name: bytes, statement: bytes) -> None:
    """Prepare ``statement`` as ``name`` on a blocking connection (its parameter types
    come from the statement: the function's signature, the read's casts)."""
    _checked(pgconn.prepare(name, statement), pq.ExecStatus.COMMAND_OK)


async def prepare_async(pgconn: pq.abc.PGconn, name: bytes, statement: bytes) -> None:
    """As :func:`prepare` on a non-blocking connection, without blocking the loop."""
    pgconn.send_prepare(name, statement)
    results = await _exchange_async(pgconn)
    if not results:
        raise psycopg.OperationalError("the server sent no result")
    for result in results:
        _checked(result, pq.ExecStatus.COMMAND_OK)


def send(pgconn: pq.abc.PGconn, params: tuple[Any, ...]) -> None:
    """Send the prepared append with ``params`` (:class:`~.pg_arrays.PgArray` objects).
    psycopg's connections are non-blocking: what does not fit in the socket yet stays
    in libpq's buffer, and :func:`collect` (or :func:`wait`) sends it."""
    pgconn.send_query_prepared(APPEND_STATEMENT, [p.data for p in params], _FORMATS)


def collect(pgconn: pq.abc.PGconn) -> bool:
    """Send what is left of the append and wait for its results (without the GIL);
    whether it wrote (false: a stream or key it depends on moved, nothing was
    written). Raises the server's error, also one reported after the row (a failed
    commit: nothing was written)."""
    return _written(_results(pgconn))


def send_read(pgconn: pq.abc.PGconn, params: tuple[PgArray, PgArray, PgArray]) -> None:
    """Send the prepared read with its key ids, stream ids and versions known (its rows
    come back in binary form)."""
    pgconn.send_query_prepared(
        READ_STATEMENT, [p.data for p in params], _FORMATS[:3], pq.Format.BINARY
    )


def collect_rows(pgconn: pq.abc.PGconn) -> list[ReadRow]:
    """The read's rows (waiting without the GIL); raises the server's error."""
    results = _results(pgconn)
    if len(results) != 1:
        raise psycopg.OperationalError(f"the read sent {len(results)} results, not 1")
    result = results[0]
    _checked(result, pq.ExecStatus.TUPLES_OK)
    get = result.get_value
    rows: list[ReadRow] = []
    for n in range(result.ntuples):
        a, b = get(n, 3), get(n, 4)
        rows.append(
            (
                int.from_bytes(get(n, 0) or b"", "big", signed=True),
                uuid.UUID(bytes=bytes(get(n, 1) or b"")),
                int.from_bytes(get(n, 2) or b"", "big", signed=True),
                None if a is None else bytes(a).decode(),
                None if b is None else bytes(b).decode(),
                bytes(get(n, 5) or b""),
            )
        )
    return rows


def read_streams(
    stream_ids: Collection[uuid.UUID], known: Mapping[uuid.UUID, Known]
) -> tuple[list[uuid.UUID], list[int]]:
    """The read's stream ids and the version known of each (0: read in full)."""
    streams = [*stream_ids, *known]
    versions = [0] * len(stream_ids)
    versions += [version for _, version in known.values()]
    return streams, versions


def read_rows(
    rows: Iterable[ReadRow], known: Mapping[uuid.UUID, Known]
) -> tuple[dict[uuid.UUID, KeyRecord], dict[uuid.UUID, tuple[StoredEvent, StoredEvent]]]:
    """Key records and stream heads (first and latest event) from the read's rows, in
    any order (a stream's first event is its version 1, its latest the other one; a
    known stream has only its latest event, paired with the first event known)."""
    keys: dict[uuid.UUID, KeyRecord] = {}
    firsts: dict[uuid.UUID, StoredEvent] = {}
    latest: dict[uuid.UUID, StoredEvent] = {}
    for kind, sid, version, a, b, state in rows:
        if kind == 0:
            keys[sid] = KeyRecord(sid, cast(str, a), cast(str, b), bytes(state))
        elif kind == 1:
            keys[sid] = key_record_from_entry(stored_event(sid, 1, TOPIC_ENTRY, bytes(state)))
        else:
            event = stored_event(sid, version, cast(str, a), bytes(state))
            (firsts if version == 1 else latest)[sid] = event
    found = {sid: (first, latest.get(sid, first)) for sid, first in firsts.items()}
    for sid, event in latest.items():
        held = known.get(sid)
        if held is not None:
            found[sid] = (held[0], event)
    return keys, found


def _results(pgconn: pq.abc.PGconn) -> list[pq.abc.PGresult]:
    """Send what is left of the statement and wait (without the GIL) for its results."""
    exchange = _exchange(pgconn)
    try:
        while True:
            _poll({pgconn.socket: next(exchange)})
    except StopIteration as done:
        results: list[pq.abc.PGresult] = done.value
        return results


def wait(pgconn: pq.abc.PGconn, other: int) -> bool:
    """Send what is left of the append, then wait (without the GIL) until its results
    are arriving (True) or ``other``, a file descriptor, is readable (False)."""
    fd = pgconn.socket
    while True:
        pending = pgconn.flush()
        ready = _poll({fd: _READ | (_WRITE if pending else 0), other: _READ})
        if fd in ready and not pending:
            return True
        if other in ready and not pending:  # the whole statement is with the server
            return False
        if fd in ready:
            pgconn.consume_input()  # the server may talk while it reads (a notice)


async def collect_async(pgconn: pq.abc.PGconn) -> bool:
    """As :func:`collect` for a connection used from the running loop."""
    return _written(await _exchange_async(pgconn))


async def _exchange_async(pgconn: pq.abc.PGconn) -> list[pq.abc.PGresult]:
    loop = asyncio.get_running_loop()
    fd = pgconn.socket
    exchange = _exchange(pgconn)
    try:
        while True:
            await _ready(loop, fd, next(exchange))
    except StopIteration as done:
        results: list[pq.abc.PGresult] = done.value
        return results


_READ, _WRITE = 1, 2


def _exchange(pgconn: pq.abc.PGconn) -> Generator[int, None, list[pq.abc.PGresult]]:
    """Send what libpq still holds of the statement, then read all its results: yields
    what to wait for on the socket (_READ, _WRITE or both), returns the results."""
    while pgconn.flush():
        yield _READ | _WRITE
        pgconn.consume_input()  # readable: take what the server sent (it also flushes)
    results: list[pq.abc.PGresult] = []
    while True:
        if pgconn.is_busy():  # else a result is complete in libpq's buffer: no recv
            yield _READ
            pgconn.consume_input()
            continue
        result = pgconn.get_result()
        if result is None:
            return results
        results.append(result)


def _poll(wanted: dict[int, int]) -> set[int]:
    """Block (without the GIL) until one of the file descriptors is ready for what is
    wanted of it (_READ, _WRITE); the ready ones. ``poll`` where the platform has it
    (``select`` refuses descriptors above 1023)."""
    if hasattr(select, "poll"):
        poller = select.poll()
        for fd, events in wanted.items():
            if events:
                mask = (select.POLLIN if events & _READ else 0) | (
                    select.POLLOUT if events & _WRITE else 0
                )
                poller.register(fd, mask)
        return {fd for fd, _ in poller.poll()}
    reads = [fd for fd, events in wanted.items() if events & _READ]
    writes = [fd for fd, events in wanted.items() if events & _WRITE]
    readable, writable, _ = select.select(reads, writes, [])
    return set(readable) | set(writable)


async def _ready(loop: asyncio.AbstractEventLoop, fd: int, events: int) -> None:
    """Wait on the loop until ``fd`` is ready for one of ``events``."""
    waiter: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not waiter.done():
            waiter.set_result(None)

    if events & _READ:
        loop.add_reader(fd, wake)
    if events & _WRITE:
        loop.add_writer(fd, wake)
    try:
        await waiter
    finally:
        if events & _READ:
            loop.remove_reader(fd)
        if events & _WRITE:
            loop.remove_writer(fd)


def _written(results: list[pq.abc.PGresult]) -> bool:
    """The append's answer; the first error among its results raised."""
    if not results:
        raise psycopg.OperationalError("the server sent no result")
    for result in results:
        if result.status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
            raise pg_errors.error_from_result(result, encoding="utf-8")
    _checked(results[0], pq.ExecStatus.TUPLES_OK)
    return bool(results[0].get_value(0, 0) == b"t")


def _checked(result: pq.abc.PGresult, expected: pq.ExecStatus) -> None:
    if result.status != expected:
        raise pg_errors.error_from_result(result, encoding="utf-8")

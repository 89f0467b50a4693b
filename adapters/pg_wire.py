"""The append function's call sent through libpq directly, for the ledger's own
connections (the group commit's thread, an event loop's appender).

psycopg's cursor does for every statement what the append does not need: it looks up
a dumper per parameter, keeps a cache of prepared statements, and runs its result
handling through generators. The append is always the same statement with the same
14 binary arrays (see :mod:`.pg_arrays`, which already holds their bytes), so it is
prepared once per connection under its own name and sent with
``PQsendQueryPrepared``; the result is one boolean. Measured with 32 threads on one
ledger: 6,850-7,416 payments/s through the cursor, 7,515-7,705/s this way (the
committer thread's work per group is what bounds that row).

Sending and collecting are separate steps, so a caller can do other work while the
server runs the statement. Errors come back as psycopg's exceptions (the same classes
a cursor raises), for the appenders to translate.
"""

from __future__ import annotations

import asyncio
import select
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq
from psycopg.sql import SQL, Composable

__all__ = [
    "APPEND_STATEMENT",
    "append_call",
    "collect",
    "collect_async",
    "prepare",
    "prepare_async",
    "readable",
    "send",
]

#: The prepared statement's name on each connection that sends it.
APPEND_STATEMENT = b"ledger_append"
#: Every parameter goes in binary form.
_FORMATS = [pq.Format.BINARY] * 14


def append_call(function: Composable) -> Composable:
    """``SELECT function($1, ..., $14)``: the append's call with numbered parameters."""
    args = ", ".join(f"${n}" for n in range(1, 15))
    return SQL("SELECT {fn}(" + args + ")").format(fn=function)


def prepare(pgconn: pq.abc.PGconn, statement: bytes) -> None:
    """Prepare the append on a blocking connection (its parameter types come from the
    function's signature)."""
    _checked(pgconn.prepare(APPEND_STATEMENT, statement), pq.ExecStatus.COMMAND_OK)


async def prepare_async(pgconn: pq.abc.PGconn, statement: bytes) -> None:
    """As :func:`prepare` on a non-blocking connection, without blocking the loop."""
    pgconn.send_prepare(APPEND_STATEMENT, statement)
    _checked(await _result_async(pgconn), pq.ExecStatus.COMMAND_OK)


def send(pgconn: pq.abc.PGconn, params: tuple[Any, ...]) -> None:
    """Send the prepared append with ``params`` (:class:`~.pg_arrays.PgArray` objects);
    on a non-blocking connection the caller flushes."""
    pgconn.send_query_prepared(APPEND_STATEMENT, [p.data for p in params], _FORMATS)


def collect(pgconn: pq.abc.PGconn) -> bool:
    """Wait for the append's result on a blocking connection (without the GIL); whether
    it wrote (false: a stream or key it depends on moved, nothing was written)."""
    results = _Results(pgconn)
    for _ in results:
        select.select([pgconn.socket], [], [])
    return _written(_only(results))


def readable(pgconn: pq.abc.PGconn, other: int) -> bool:
    """Wait (without the GIL) until the connection has input (True) or ``other``, a
    file descriptor, is readable (False)."""
    ready, _, _ = select.select([pgconn.socket, other], [], [])
    return pgconn.socket in ready


async def collect_async(pgconn: pq.abc.PGconn) -> bool:
    """As :func:`collect` for a non-blocking connection, on the running loop."""
    return _written(await _result_async(pgconn))


async def _result_async(pgconn: pq.abc.PGconn) -> pq.abc.PGresult:
    """Flush what is left of the statement sent, then wait for its result."""
    loop = asyncio.get_running_loop()
    fd = pgconn.socket
    while pgconn.flush():
        await _ready(loop, fd, writing=True)
    results = _Results(pgconn)
    for _ in results:
        await _ready(loop, fd, writing=False)
    return _only(results)


async def _ready(loop: asyncio.AbstractEventLoop, fd: int, *, writing: bool) -> None:
    waiter: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not waiter.done():
            waiter.set_result(None)

    if writing:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await waiter
    finally:
        if writing:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


class _Results:
    """Reads one statement's results; iterating yields each time the socket must be
    waited on (readable), and ends once the statement's results are all in."""

    def __init__(self, pgconn: pq.abc.PGconn) -> None:
        self.pgconn = pgconn
        self.first: pq.abc.PGresult | None = None

    def __iter__(self) -> Iterator[None]:
        pgconn = self.pgconn
        while True:
            pgconn.consume_input()
            if pgconn.is_busy():
                yield None
                continue
            result = pgconn.get_result()
            if result is None:
                return
            if self.first is None:
                self.first = result


def _only(results: _Results) -> pq.abc.PGresult:
    if results.first is None:
        raise psycopg.OperationalError("the server sent no result")
    return results.first


def _written(result: pq.abc.PGresult) -> bool:
    _checked(result, pq.ExecStatus.TUPLES_OK)
    return bool(result.get_value(0, 0) == b"t")


def _checked(result: pq.abc.PGresult, expected: pq.ExecStatus) -> None:
    if result.status != expected:
        raise pg_errors.error_from_result(result, encoding="utf-8")

"""Connections a forked child inherited from its parent: left to the parent.

After ``os.fork()`` the child holds copies of the parent's sockets, and so shares
the parent's PostgreSQL sessions. A statement sent on one interleaves with the
parent's (a prepared statement the parent already made "already exists"); closing
one sends libpq's Terminate message and ends the parent's session. So the child
never uses them, and closes them only after pointing their descriptor at
``/dev/null``: the child's copy of the socket is released, the parent's session is
not touched. A connection in use by another of the parent's threads at the fork is
not seen; Python never finalizes what those threads held.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import psycopg

__all__ = ["forget_connection", "forget_pool"]

#: Pools inherited by a forked child: never used or finalized here (their workers
#: are the parent's threads, their locks may be held by them).
_INHERITED: list[Any] = []


def forget_connection(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    """Close a connection inherited from the parent process without sending anything
    on its socket."""
    if conn.closed:
        return
    with contextlib.suppress(psycopg.Error, OSError):
        fd = conn.pgconn.socket
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)
    with contextlib.suppress(psycopg.Error, OSError):
        conn.pgconn.finish()  # libpq's Terminate goes to /dev/null


def forget_pool(pool: Any) -> None:
    """Release the idle connections of a pool inherited from the parent process
    (as :func:`forget_connection`) and keep the pool itself from ever running here."""
    for conn in list(getattr(pool, "_pool", ())):  # psycopg_pool's idle connections
        forget_connection(conn)
    _INHERITED.append(pool)

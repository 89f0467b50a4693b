"""The PostgreSQL store's connection pool: eventsourcing's datastore, as a guest.

Differences from :class:`eventsourcing.postgres.PostgresDatastore`:

* the pool's connections get exactly the URL's libpq parameters: nothing the URL
  leaves out is filled in (libpq's defaults, ``PGHOST``, ``PGPASSWORD``... apply);
* a new connection is put in autocommit mode and prefers generic plans (see
  :func:`~ledger.adapters.pg_appenders.prefer_generic_plans`), and keeps every other
  session setting it was given (eventsourcing's ``SET
  idle_in_transaction_session_timeout`` reset the URL's or the role's value);
* no composite type adapter is registered: the ledger appends through its own
  function and COPY, never eventsourcing's ``insert_events``, and each registration
  fetched a new type description that psycopg caches without bound (memory grew
  with every ``Ledger.open``);
* in a forked child the parent's pool is left to the parent (see :mod:`.pg_fork`)
  and a new one is made on first use;
* ``schema`` is the ledger's (the connection's ``current_schema()`` at open), never
  eventsourcing's default ``public``;
* a pooled session that the server had ended (a restart, a failover, an idle-session
  timeout) is raised as :class:`SessionLost`, and the pool's other idle sessions are
  checked at once: after a restart they are all dead, and each would otherwise fail
  one more attempt of the ledger (which waits longer before each) or one more read.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from eventsourcing.persistence import ConnectionPoolClosedError, OperationalError
from psycopg.rows import DictRow, dict_row

from .pg_appenders import prefer_generic_plans
from .pg_fork import forget_pool
from .pg_guest import ConnectionPool, PostgresDatastore

__all__ = ["Datastore", "SessionLost"]

#: Pooled connections beyond ``pool_size`` opened under load.
MAX_OVERFLOW = 2
#: Seconds a caller waits for a pooled connection.
POOL_TIMEOUT_S = 5.0


class SessionLost(OperationalError):
    """The pooled session a statement ran on was ended by the server (whether a write
    sent on it committed is unknown; a read can run again on another session)."""


def _after_connect(conn: psycopg.Connection[Any]) -> None:
    conn.autocommit = True
    prefer_generic_plans(conn)


class Datastore(PostgresDatastore):
    """eventsourcing's datastore on a pool of connections with the URL's settings."""

    def __init__(
        self, settings: Mapping[str, Any], *, schema: str, pool_size: int, lock_timeout: int
    ) -> None:
        self._settings = dict(settings)
        self._pool_size = pool_size
        super().__init__(
            dbname=str(settings.get("dbname", "")),
            host="",
            port="",
            user="",
            password="",
            pool_size=pool_size,
            max_overflow=MAX_OVERFLOW,
            lock_timeout=lock_timeout,
            connect_timeout=POOL_TIMEOUT_S,
            pre_ping=False,  # a dead connection fails the attempt, which is retried
            schema=schema,  # the ledger's (eventsourcing's statements name it)
        )
        self._pid = os.getpid()
        #: Taken only in a forked child, by the first threads to want a connection.
        self._fork_lock = threading.Lock()
        #: Set by :meth:`close`: later requests for a connection fail at once.
        self._closed = False
        self.pool = self._new_pool()  # eventsourcing's was never opened

    def _new_pool(self) -> ConnectionPool[psycopg.Connection[DictRow]]:
        return ConnectionPool(
            connection_class=psycopg.Connection[DictRow],
            kwargs={**self._settings, "row_factory": dict_row},
            min_size=self._pool_size,
            max_size=self._pool_size + MAX_OVERFLOW,
            open=False,
            configure=_after_connect,
            timeout=POOL_TIMEOUT_S,
        )

    def after_connect_func(self) -> Callable[[psycopg.Connection[Any]], None]:
        """Autocommit and generic plans; every other setting stays as given."""
        return _after_connect

    def register_type_adapters(self) -> None:
        """Nothing: the ledger never inserts through eventsourcing's composite type."""

    @contextmanager
    def get_connection(self) -> Iterator[psycopg.Connection[DictRow]]:
        """A pooled connection of this process's own pool."""
        # Checked first: a forked child of a closed store (or one closed in the child)
        # opens no pool of its own. Not retried as an unreachable server would be.
        if self._closed:
            raise ConnectionPoolClosedError("the store is closed")
        if self._pid != os.getpid():
            with self._fork_lock:  # one thread of the child swaps the pool, once
                if self._pid != os.getpid():
                    self._after_fork()
        lost = False
        try:
            with super().get_connection() as conn:
                try:
                    yield conn
                except BaseException:
                    lost = conn.broken
                    raise
        except OperationalError as e:
            if not lost:
                raise
            self._drop_dead_sessions()
            raise SessionLost(str(e)) from e

    def _drop_dead_sessions(self) -> None:
        """Replace the pool's idle sessions that the server ended too (one round trip
        each, only after a session was found dead)."""
        with contextlib.suppress(Exception):  # closing, or the server is down: nothing to do
            self.pool.check()

    def _after_fork(self) -> None:
        inherited, self.pool = self.pool, self._new_pool()
        self._pid = os.getpid()
        forget_pool(inherited)

    def close(self) -> None:
        """Close this process's pool; later requests for a connection fail at once. In
        a forked child that has not used the store, the parent's pool is left alone
        (its sessions are the parent's) and the store is closed all the same."""
        self._closed = True
        if self._pid == os.getpid():
            super().close()

"""Appending to PostgreSQL from an asyncio event loop, without blocking it.

:class:`PostgresLoopAppender` is the :class:`~ledger.store.LoopAppender` of a
:class:`~ledger.adapters.postgres_store.PostgresEventStore`: one psycopg
``AsyncConnection`` per event loop, opened on its first append, sending the same
one-statement append (the same prepared call, the same binary array parameters) as
the store's own connections. Groups too large for one call go through the store's
COPY path in a worker thread. Errors are the store's: a conflict is
:class:`~ledger.store.AppendConflict`, an unreachable server
:class:`~ledger.errors.StoreUnavailable` (the connection is dropped and opened
again on the next append).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import errors as pg_errors

from ledger.errors import StoreError, StoreUnavailable
from ledger.store import AppendConflict, WriteBatch

from .pg_arrays import adapt

if TYPE_CHECKING:
    from .postgres_store import PostgresEventStore

__all__ = ["PostgresLoopAppender"]


class PostgresLoopAppender:
    """Appends a store's batches from the event loop it is first used on."""

    def __init__(self, store: PostgresEventStore) -> None:
        self.store = store
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._query: bytes | None = None

    async def append(self, batch: WriteBatch) -> None:
        """Write ``batch`` atomically (as :meth:`PostgresEventStore.append`)."""
        store = self.store
        if not store.fits_one_call(batch):
            await asyncio.to_thread(store.append, batch)
            return
        try:
            conn = self._conn
            if conn is None or conn.closed:
                conn = await self._connect()
            assert self._query is not None
            async with conn.cursor() as cur:
                await cur.execute(self._query, store.append_params(batch), prepare=True)
                row = await cur.fetchone()
        except pg_errors.UndefinedFunction as e:
            raise store.missing_function_error() from e
        except (psycopg.OperationalError, psycopg.InterfaceError) as e:
            await self._drop()
            raise StoreUnavailable(f"PostgreSQL store {store.url} is unavailable: {e}") from e
        except psycopg.IntegrityError as e:
            raise AppendConflict(str(e)) from e
        except psycopg.Error as e:
            raise StoreError(f"PostgreSQL store {store.url} failed: {e}") from e
        except BaseException:
            # Cancelled mid-statement (the loop is stopping): the connection's state is
            # unknown, so it is not used again.
            await self._drop()
            raise
        if row is None or not row[0]:
            raise AppendConflict(
                "a concurrent writer changed a stream or key this batch depends on"
            )

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(
            **self.store.settings, autocommit=True, connect_timeout=5
        )
        adapt(conn)
        self._query = self.store.append_query(conn)
        self._conn = conn
        return conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    async def aclose(self) -> None:
        """Close the connection."""
        await self._drop()

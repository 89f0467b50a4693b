"""What a projection writes through: a small SQL surface both backends provide.

SQL is written with ``?`` placeholders and ``{amount}`` for the amount column type
(``NUMERIC(40,0)`` on PostgreSQL, ``TEXT`` on SQLite, whose integers stop at 64 bits);
amounts go in through :meth:`ViewWriter.amount` and come back through ``int()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from ledger.sealing import Sealer

__all__ = ["ViewStore", "ViewWriter"]


class ViewWriter(Protocol):
    """A cursor inside one read-model transaction (or a read-only snapshot)."""

    dialect: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement."""

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for many parameter rows."""

    def bulk_insert(
        self,
        table: str,
        columns: Sequence[tuple[str, str]],
        rows: Sequence[Sequence[Any]],
        suffix_sql: str = "",
    ) -> None:
        """Insert many rows at once. ``columns`` are (name, type) with type one of
        ``text``, ``int``, ``amount``; ``suffix_sql`` may hold an ON CONFLICT clause."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a query and return its rows."""

    def amount(self, value: int) -> Any:
        """An exact integer amount as this backend stores it."""

    def ddl(self, sql: str) -> str:
        """``sql`` with the backend's column types substituted."""


class ViewStore(Protocol):
    """Transactions on the database that holds the read models."""

    url: str
    #: Seals the personal text the read models copy and opens it on reads, inside
    #: :meth:`transaction` and :meth:`snapshot` blocks (None: plain; see
    #: :mod:`ledger.sealing`).
    sealer: Sealer | None

    def transaction(self) -> AbstractContextManager[ViewWriter]:
        """A read-write transaction, committed when the block exits normally (the
        store's sealer in use inside)."""

    def snapshot(self) -> AbstractContextManager[ViewWriter]:
        """A read-only view of committed data (the store's sealer in use inside)."""

    def close(self) -> None:
        """Release connections."""

"""The public ``Ledger`` and ``AsyncLedger``: the write side's services, opened from a
store URL.

The services in :mod:`ledger.commands` are given an event store; this module binds
them to the stores of :mod:`ledger.adapters` (``sqlite:///...``, ``postgresql://...``)
and is what ``from ledger import Ledger, AsyncLedger`` returns.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import datetime
from typing import Literal

from ledger.commands import aio, service
from ledger.errors import StoreError
from ledger.logs import get_logger
from ledger.projections.views import ViewStore
from ledger.risk import RiskPolicy
from ledger.sealing import Sealer

from .urls import open_store
from .view_store import open_view_store

__all__ = ["AsyncLedger", "Ledger"]

log = get_logger(__name__)

_DURABILITY = ("require", "allow")


class Ledger(service.Ledger):
    """A double-entry ledger on an event store; open one with :meth:`open`.

    See :class:`ledger.commands.service.Ledger` for the commands and reads.
    """

    @classmethod
    def open(
        cls,
        url: str,
        *,
        create_schema: bool = True,
        durability: Literal["require", "allow"] = "require",
        clock: Callable[[], datetime] | None = None,
        risk: RiskPolicy | None = None,
        keyring: Sealer | None = None,
        group_commands_max: int | None = None,
        queue_commands_max: int | None = None,
        pause_gc: bool = False,
    ) -> Ledger:
        """Open the ledger stored at ``url`` (``sqlite:///path`` or ``postgresql://...``).

        ``create_schema`` creates missing tables (safe to repeat, also concurrently).
        With ``durability="require"`` (the default) a PostgreSQL server with
        ``synchronous_commit=off`` or ``fsync=off`` is refused with StoreError.
        Any other value raises ValueError (before connecting), as does a group or queue
        limit that is not a whole number of at least 1.
        ``risk`` is a policy that may veto payments (see :mod:`ledger.risk`).
        ``keyring`` encrypts the descriptions, notes and metadata this ledger writes
        and opens those it reads (see :mod:`ledger.adapters.crypto`); it is this
        ledger's alone, not the process's (an object without ``seal`` and ``open``,
        such as a ``LEDGER_KEYS`` string, raises TypeError before connecting).
        ``group_commands_max`` (default 1,000) caps the commands one group commit
        carries; ``queue_commands_max`` (default 50,000) the commands waiting for one,
        beyond which a write raises :class:`~ledger.errors.Overloaded`.
        ``pause_gc=True`` lets the bulk path (``submit_all``, large ``submit_many``)
        pause Python's cyclic garbage collector while it runs (about a fifth faster);
        the collector is the application's, so this is off unless asked for.
        """
        if durability not in _DURABILITY:  # a typo must not turn the guard off
            # ValueError, as for the other bad options (group and queue limits).
            raise ValueError(f"durability must be 'require' or 'allow', not {durability!r}")
        # Checked before connecting: a refusal leaves no file, connection or pool thread
        # (which the traceback of an error the host keeps would otherwise hold open).
        _limit(group_commands_max, "group_commands_max")
        _limit(queue_commands_max, "queue_commands_max")
        if keyring is not None and not all(
            callable(getattr(keyring, method, None)) for method in ("seal", "open")
        ):
            # A LEDGER_KEYS string or a raw key: every write would fail on it.
            raise TypeError(
                f"keyring must be a ledger.Keyring (keyring_from_env() reads LEDGER_KEYS), "
                f"not {type(keyring).__name__}"
            )
        if keyring is None and os.environ.get("LEDGER_KEYS", "").strip():
            # The environment is read only when asked; an application that relied on
            # LEDGER_KEYS alone (the keyring used to be per process) hears about it.
            log.warning(
                "ledger.keys_in_environment_not_used",
                hint="pass keyring=ledger.adapters.crypto.keyring_from_env() to encrypt",
            )
        store = open_store(url, require_durable=durability == "require")
        try:
            if create_schema:
                store.create_schema()
            return cls(
                store,
                clock=clock,
                risk=risk,
                group_commands_max=group_commands_max,
                queue_commands_max=queue_commands_max,
                pause_gc=pause_gc,
                keyring=keyring,
            )
        except BaseException:
            store.close()
            raise

    def open_views(self) -> ViewStore:
        """A new connection to this ledger's read-model database (the same database),
        sealing the text its read models copy with this ledger's keyring (the caller
        closes it). StoreError ("the ledger is closed") once :meth:`close` was called:
        a closed ledger opens no connection."""
        if self.closed:
            raise StoreError("the ledger is closed")
        return open_view_store(self.store, sealer=self.keyring)


def _limit(value: object, name: str) -> None:
    """Refuse (ValueError) a group or queue limit that is not a whole number >= 1."""
    if value is not None and (type(value) is not int or value < 1):
        raise ValueError(f"{name} must be a whole number of at least 1, not {value!r:.40}")


class AsyncLedger(aio.AsyncLedger):
    """A ledger for asyncio code; open one with :meth:`open`.

    See :class:`ledger.commands.aio.AsyncLedger` for the commands and reads.
    """

    sync: Ledger

    def __init__(self, books: Ledger) -> None:
        super().__init__(books)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        create_schema: bool = True,
        durability: Literal["require", "allow"] = "require",
        clock: Callable[[], datetime] | None = None,
        risk: RiskPolicy | None = None,
        keyring: Sealer | None = None,
        group_commands_max: int | None = None,
        queue_commands_max: int | None = None,
        pause_gc: bool = False,
    ) -> AsyncLedger:
        """Open the ledger stored at ``url`` (``sqlite:///path`` or ``postgresql://...``)
        without blocking the event loop. The options (``create_schema``, ``durability``,
        ``clock``, ``risk``, ``keyring``, ``group_commands_max``, ``queue_commands_max``,
        ``pause_gc``) are :meth:`Ledger.open`'s, with its defaults, meaning and errors."""
        books = await asyncio.to_thread(
            Ledger.open,
            url,
            create_schema=create_schema,
            durability=durability,
            clock=clock,
            risk=risk,
            keyring=keyring,
            group_commands_max=group_commands_max,
            queue_commands_max=queue_commands_max,
            pause_gc=pause_gc,
        )
        return cls(books)

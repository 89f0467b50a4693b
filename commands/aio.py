"""The ledger for asyncio code: :class:`AsyncLedger`, the same commands, awaited.

An ``AsyncLedger`` wraps a :class:`~ledger.Ledger` and submits to the same group
commit: awaiting tasks and threads of one process share transactions. Awaiting never
blocks the event loop on the store. On PostgreSQL the loop commits its own tasks'
groups: it decides a group on the loop when every state it needs is cached (in a
worker thread when it must read), then awaits the append on a connection of its own,
serving other tasks meanwhile; no thread switch per group. On SQLite, writes wait on a
future that the committer thread resolves (the tasks of one group are woken
together). Reads run in the loop's default thread pool.

Inside the loop that commits an ``AsyncLedger``'s writes, the wrapped
:class:`~ledger.Ledger`'s blocking writes are refused with ``RuntimeError`` (they
would block the loop that must finish the group in flight): await the
``AsyncLedger``, or call the ``Ledger`` from a thread (``asyncio.to_thread``).

Cancelling a task that awaits a write never half-applies anything: the command was
queued whole, and it applies or not (usually it does, a moment later). A retry with
the same key returns its original outcome, as always.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from ledger.accounts import AccountBalance
from ledger.assets import Asset
from ledger.commands import builders
from ledger.commands.builders import AmountLike, LegLike
from ledger.commands.group_commit import AsyncWaiter
from ledger.commands.models import Command, DeclareAsset, OpenAccount, parse_commands
from ledger.commands.service import Ledger
from ledger.errors import IdempotencyConflict, StoreError
from ledger.model import EntryState
from ledger.outcome import Outcome

__all__ = ["AsyncLedger"]

T = TypeVar("T")


class AsyncLedger:
    """A :class:`~ledger.Ledger` for asyncio code: every method is awaited.

    Open one with ``ledger.AsyncLedger.open(url)`` (or wrap a ``Ledger`` you already
    have, to share its group commits with threads). Errors are the same typed errors
    as the ``Ledger``'s. The recipes of :mod:`ledger.payments` take an
    ``AsyncLedger`` too and are then awaited: ``await payments.send(abooks, key,
    ...)``.
    """

    def __init__(self, books: Ledger) -> None:
        self.sync = books
        """The wrapped :class:`~ledger.Ledger` (for code that runs in threads)."""
        self._closing = False
        self._closer: asyncio.Task[None] | None = None

    async def close(self) -> None:
        """Finish the writes already submitted, then release the store's connections
        (close an ``AsyncLedger`` this way, not through :attr:`sync`, from its loop).
        Writes submitted once closing has begun raise StoreError, as after
        :meth:`Ledger.close` (tasks that keep writing cannot keep it from ending).
        Cancelling the caller (a timeout on close) does not stop the closing: it runs
        to its end in a task of its own, which a second ``close`` awaits."""
        # Refused first: the loop's driver commits until its queue is empty, and tasks
        # writing on would keep it from ever being empty.
        self._closing = True
        loop = asyncio.get_running_loop()
        closer = self._closer
        if closer is None or closer.get_loop() is not loop:
            closer = self._closer = loop.create_task(self._close(loop))
        await asyncio.shield(closer)

    async def _close(self, loop: asyncio.AbstractEventLoop) -> None:
        driver = self.sync._committer.forget_loop(loop)
        if driver is not None:
            await driver.finish()
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> Self:
        if self._closing:  # as ``with`` on a closed Ledger
            raise StoreError("the ledger is closed")
        self.sync.__enter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    # -- the general write path -----------------------------------------------------------

    def _queue(self, commands: Sequence[Command | Mapping[str, Any]]) -> Awaitable[list[Outcome]]:
        """Queue ``commands`` for the group commit; a future of their outcomes."""
        parsed = parse_commands(commands)
        if self._closing:
            raise StoreError("the ledger is closed")
        loop = asyncio.get_running_loop()
        if not parsed:
            done: asyncio.Future[list[Outcome]] = loop.create_future()
            done.set_result([])
            return done
        waiter = AsyncWaiter(loop)
        self.sync._committer.submit(parsed, waiter)
        return waiter.future

    async def submit_many(self, commands: Sequence[Command | Mapping[str, Any]]) -> list[Outcome]:
        """As :meth:`Ledger.submit_many`: one outcome per command, in one transaction
        (shared with other callers)."""
        return await self._queue(commands)

    async def submit_all(
        self, commands: Sequence[Command | Mapping[str, Any]], *, chunk_size: int = 10_000
    ) -> list[Outcome]:
        """As :meth:`Ledger.submit_all` (the throughput path, run in a worker thread)."""
        return await asyncio.to_thread(self.sync.submit_all, commands, chunk_size=chunk_size)

    async def submit(self, command: Command | Mapping[str, Any]) -> Outcome:
        """Apply one command and return its outcome."""
        return (await self._queue([command]))[0]

    async def execute(self, command: Command | Mapping[str, Any]) -> Outcome:
        """Apply one command; raise its typed error unless it applied."""
        return (await self._queue([command]))[0].raise_for_status()

    # -- convenience commands (as Ledger's; see ledger.commands.builders) ----------------

    async def declare_asset(self, code: str, scale: int, *, key: str | None = None) -> Outcome:
        """As :meth:`Ledger.declare_asset`."""
        command = builders.declare_asset(code, scale, key=key)
        return await self._settled(await self.submit(command), key, command)

    async def open_account(
        self,
        account: str,
        asset: str,
        *,
        key: str | None = None,
        normal: Literal["debit", "credit"] = "credit",
        min_balance: AmountLike | None = None,
        max_balance: AmountLike | None = None,
        owner: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """As :meth:`Ledger.open_account`."""
        command = builders.open_account(
            account,
            asset,
            key=key,
            normal=normal,
            min_balance=min_balance,
            max_balance=max_balance,
            owner=owner,
            metadata=metadata,
        )
        return await self._settled(await self.submit(command), key, command)

    async def _settled(
        self, outcome: Outcome, key: str | None, command: DeclareAsset | OpenAccount
    ) -> Outcome:
        if outcome.code == IdempotencyConflict.code and key is None:  # reads: in a thread
            return await self._read(self.sync._settled, outcome, key, command)
        return outcome.raise_for_status()

    async def change_limits(
        self,
        key: str,
        account: str,
        *,
        min_balance: AmountLike | None = None,
        max_balance: AmountLike | None = None,
    ) -> Outcome:
        """See :meth:`Ledger.change_limits`."""
        return await self.execute(
            builders.change_limits(key, account, min_balance=min_balance, max_balance=max_balance)
        )

    async def freeze(
        self, key: str, account: str, *, mode: Literal["debits", "all"] = "all", reason: str = ""
    ) -> Outcome:
        """See :meth:`Ledger.freeze`."""
        return await self.execute(builders.freeze(key, account, mode=mode, reason=reason))

    async def unfreeze(self, key: str, account: str, *, reason: str = "") -> Outcome:
        """See :meth:`Ledger.unfreeze`."""
        return await self.execute(builders.unfreeze(key, account, reason=reason))

    async def close_account(self, key: str, account: str, *, reason: str = "") -> Outcome:
        """See :meth:`Ledger.close_account`."""
        return await self.execute(builders.close_account(key, account, reason=reason))

    async def post(self, key: str, legs: Iterable[LegLike], **fields: Any) -> Outcome:
        """Post a balanced entry."""
        return await self.execute(builders.post(key, legs, **fields))

    async def transfer(
        self, key: str, *, debit: str, credit: str, amount: AmountLike, asset: str, **fields: Any
    ) -> Outcome:
        """Post a two-leg entry debiting ``debit`` and crediting ``credit``."""
        return await self.execute(
            builders.transfer(key, debit=debit, credit=credit, amount=amount, asset=asset, **fields)
        )

    async def hold(self, key: str, legs: Iterable[LegLike], **fields: Any) -> Outcome:
        """Reserve amounts as a pending entry."""
        return await self.execute(builders.hold(key, legs, **fields))

    async def post_hold(
        self, key: str, hold_id: uuid.UUID, legs: Iterable[LegLike] | None = None, **fields: Any
    ) -> Outcome:
        """Post a hold in full, or in part with ``legs``."""
        return await self.execute(builders.post_hold(key, hold_id, legs, **fields))

    async def void_hold(self, key: str, hold_id: uuid.UUID, **fields: Any) -> Outcome:
        """Release a hold without posting."""
        return await self.execute(builders.void_hold(key, hold_id, **fields))

    async def reverse(
        self, key: str, entry_id: uuid.UUID, legs: Iterable[LegLike] | None = None, **fields: Any
    ) -> Outcome:
        """Reverse a posting fully or partly."""
        return await self.execute(builders.reverse(key, entry_id, legs, **fields))

    async def atomic(self, key: str, commands: Sequence[Any]) -> Outcome:
        """Apply ``commands`` all-or-nothing under one key."""
        return await self.execute(builders.atomic(key, commands))

    async def request_payment(
        self,
        key: str,
        *,
        requester: str,
        payer: str,
        amount: AmountLike,
        asset: str,
        **fields: Any,
    ) -> Outcome:
        """Ask ``payer`` to pay ``requester``."""
        return await self.execute(
            builders.request_payment(
                key, requester=requester, payer=payer, amount=amount, asset=asset, **fields
            )
        )

    async def pay_request(self, key: str, request_id: uuid.UUID, **fields: Any) -> Outcome:
        """Pay an open request in full."""
        return await self.execute(builders.pay_request(key, request_id, **fields))

    async def decline_request(self, key: str, request_id: uuid.UUID, **fields: Any) -> Outcome:
        """Decline or cancel an open request."""
        return await self.execute(builders.decline_request(key, request_id, **fields))

    async def expire_due(self, now: datetime | None = None, *, limit: int = 1000) -> list[Outcome]:
        """Release every hold whose deadline is at or before ``now``."""
        commands = await self._read(lambda: self.sync.due_expiries(now, limit=limit))
        return await self.submit_many(commands) if commands else []

    # -- reads (in the loop's default thread pool) ----------------------------------------

    async def balance(self, account: str) -> AccountBalance:
        """The account's current balances, read from the store."""
        return await self._read(self.sync.balance, account)

    async def asset(self, code: str) -> Asset:
        """An ISO 4217 currency or a declared asset, with its scale."""
        return await self._read(self.sync.asset, code)

    async def request_status(self, request_id: uuid.UUID) -> str:
        """``open``, ``paid`` or ``declined``."""
        return await self._read(self.sync.request_status, request_id)

    async def entry(self, entry_id: uuid.UUID) -> EntryState | None:
        """The entry's current state (see :meth:`Ledger.entry`)."""
        return await self._read(self.sync.entry, entry_id)

    async def recorded(self, key: str) -> Outcome | None:
        """The outcome recorded under ``key``, if any (see :meth:`Ledger.recorded`)."""
        return await self._read(self.sync.recorded, key)

    def __repr__(self) -> str:
        return f"AsyncLedger({self.sync.store.url!r})"

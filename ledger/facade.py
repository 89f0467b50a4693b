"""The public entry point: :class:`Ledger`, a store plus the command handlers."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from ledger import crypto, events
from ledger.accounts import AccountBalance, balance_of
from ledger.adapters.urls import open_store
from ledger.assets import Asset, iso_currency
from ledger.commands.executor import Executor
from ledger.commands.models import (
    AtomicBatch,
    Command,
    DeclareAsset,
    DeclineRequest,
    ExpireHold,
    LegInput,
    OpenAccount,
    PayRequest,
    PlaceHold,
    PostEntry,
    PostHold,
    RequestPayment,
    ReverseEntry,
    VoidHold,
    gc_paused,
    parse_commands,
)
from ledger.crypto import Keyring
from ledger.errors import EntryNotFound, InvalidCommand, UnknownAccount, UnknownAsset
from ledger.model import account_stream_id, asset_stream_id
from ledger.outcome import Outcome
from ledger.risk import RiskPolicy
from ledger.store import EventStore

__all__ = ["AccountBalance", "Ledger", "leg"]

M = TypeVar("M", bound=BaseModel)
LegLike = Any  # LegInput, a mapping, or an (account, amount, asset) tuple


def build(model: type[M], **data: Any) -> M:
    """Validate ``data`` into ``model``, turning pydantic errors into InvalidCommand."""
    try:
        return model(**data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or model.__name__
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise InvalidCommand(f"{where}: {first['msg']}{more}") from None


def leg(account: str, amount: Decimal | str | int, asset: str) -> Any:
    """One entry leg: positive ``amount`` debits ``account``, negative credits it."""

    return build(LegInput, account=account, amount=amount, asset=asset)


def _legs(legs: Iterable[LegLike]) -> tuple[Any, ...]:

    out: list[Any] = []
    for item in legs:
        if isinstance(item, LegInput):
            out.append(item)
        elif isinstance(item, Mapping):
            out.append(build(LegInput, **item))
        else:
            account, amount, asset = item
            out.append(leg(account, amount, asset))
    return tuple(out)


class Ledger:
    """A double-entry ledger on an event store.

    Open one with :meth:`open`. Every write takes an idempotency key: the same key and
    request return the original outcome without applying anything again; the same key
    with another request raises :class:`~ledger.errors.IdempotencyConflict`.

    Thread-safe: writes are serialised per ``Ledger`` object; use one object per
    process (or several, with any number of processes: optimistic concurrency keeps
    them correct).
    """

    def __init__(
        self,
        store: EventStore,
        *,
        clock: Callable[[], datetime] | None = None,
        risk: RiskPolicy | None = None,
    ) -> None:
        self.store = store
        self._executor = Executor(store, clock=clock, risk=risk)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        url: str,
        *,
        create_schema: bool = True,
        durability: Literal["require", "allow"] = "require",
        clock: Callable[[], datetime] | None = None,
        risk: RiskPolicy | None = None,
        keyring: Keyring | None = None,
    ) -> Ledger:
        """Open the ledger stored at ``url`` (``sqlite:///path`` or ``postgresql://...``).

        ``create_schema`` creates missing tables (safe to repeat, also concurrently).
        With ``durability="require"`` (the default) a PostgreSQL server with
        ``synchronous_commit=off`` or ``fsync=off`` is refused with StoreError.
        ``risk`` is a policy that may veto payments (see :mod:`ledger.risk`).
        ``keyring`` encrypts descriptions, notes and metadata at rest from now on, for
        this process (see :mod:`ledger.crypto`).
        """
        if keyring is not None:
            crypto.configure(keyring)
        store = open_store(url, require_durable=durability == "require")
        try:
            if create_schema:
                store.create_schema()
        except BaseException:
            store.close()
            raise
        return cls(store, clock=clock, risk=risk)

    def close(self) -> None:
        """Release the store's connections."""
        self.store.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the general write path -----------------------------------------------------------

    def submit_many(self, commands: Sequence[Command | Mapping[str, Any]]) -> list[Outcome]:
        """Apply commands in one storage transaction (group commit); never raises for
        a single command's rejection: each gets its own :class:`Outcome`.

        Commands are models or plain mappings with a ``kind`` (see
        :func:`~ledger.commands.models.parse_commands`); an invalid mapping raises
        :class:`~ledger.errors.InvalidCommand` and nothing is applied."""
        parsed = parse_commands(commands)
        with self._lock:
            return self._executor.run(parsed)

    def submit_all(
        self, commands: Sequence[Command | Mapping[str, Any]], *, chunk_size: int = 10_000
    ) -> list[Outcome]:
        """The throughput path for many commands: ``chunk_size`` per transaction (at
        most 10,000), each chunk decided while the previous one is written. Each command
        is atomic and retry-safe under its key; the list as a whole is not one
        transaction (after a crash, resubmit it: applied commands replay).

        Commands may be given as plain mappings (``{"kind": "post_entry", "key": ...,
        "legs": [...]}``): they are validated in bulk, which is faster than building
        the models one by one. An invalid one raises
        :class:`~ledger.errors.InvalidCommand` before anything is applied."""
        with gc_paused():
            parsed = parse_commands(commands)
            with self._lock:
                outcomes = self._executor.run_chunked(parsed, chunk_size)
            # Freed while the collector still sleeps: it need not scan them once more.
            del parsed
        return outcomes

    def submit(self, command: Any) -> Outcome:
        """Apply one command in its own transaction and return its outcome."""
        return self.submit_many([command])[0]

    def execute(self, command: Any) -> Outcome:
        """Apply one command; raise its typed error unless it applied."""
        return self.submit(command).raise_for_status()

    # -- convenience commands (raise typed errors) ---------------------------------------

    def declare_asset(self, code: str, scale: int, *, key: str | None = None) -> Outcome:
        """Declare a user-defined asset with ``scale`` decimals (0-18)."""

        return self.execute(build(DeclareAsset, key=key or f"asset:{code}", code=code, scale=scale))

    def open_account(
        self,
        account: str,
        asset: str,
        *,
        key: str | None = None,
        normal: Literal["debit", "credit"] = "credit",
        min_balance: Decimal | str | int | None = None,
        max_balance: Decimal | str | int | None = None,
        owner: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """Open an account (see :class:`~ledger.commands.models.OpenAccount` for rules)."""

        return self.execute(
            build(
                OpenAccount,
                key=key or f"account:{account}",
                account=account,
                asset=asset,
                normal=normal,
                min_balance=min_balance,
                max_balance=max_balance,
                owner=owner,
                metadata=dict(metadata or {}),
            )
        )

    def post(self, key: str, legs: Iterable[LegLike], **fields: Any) -> Outcome:
        """Post a balanced entry. ``fields``: effective_at, description, metadata,
        expected_versions."""

        return self.execute(build(PostEntry, key=key, legs=_legs(legs), **fields))

    def transfer(
        self,
        key: str,
        *,
        debit: str,
        credit: str,
        amount: Decimal | str | int,
        asset: str,
        **fields: Any,
    ) -> Outcome:
        """Post a two-leg entry debiting ``debit`` and crediting ``credit``."""
        return self.post(key, [(debit, amount, asset), (credit, f"-{amount}", asset)], **fields)

    def hold(self, key: str, legs: Iterable[LegLike], **fields: Any) -> Outcome:
        """Reserve amounts as a pending entry; ``fields`` may include expires_at."""

        return self.execute(build(PlaceHold, key=key, legs=_legs(legs), **fields))

    def post_hold(
        self, key: str, hold_id: uuid.UUID, legs: Iterable[LegLike] | None = None, **fields: Any
    ) -> Outcome:
        """Post a hold in full, or in part with ``legs``; the rest is released."""

        given = None if legs is None else _legs(legs)
        return self.execute(build(PostHold, key=key, hold_id=hold_id, legs=given, **fields))

    def void_hold(self, key: str, hold_id: uuid.UUID, **fields: Any) -> Outcome:
        """Release a hold without posting."""

        return self.execute(build(VoidHold, key=key, hold_id=hold_id, **fields))

    def reverse(
        self, key: str, entry_id: uuid.UUID, legs: Iterable[LegLike] | None = None, **fields: Any
    ) -> Outcome:
        """Reverse a posting fully, or partly with ``legs`` or with ``amount=`` and
        ``account=`` (see :class:`~ledger.commands.models.ReverseEntry`); never beyond
        what was posted."""

        given = None if legs is None else _legs(legs)
        return self.execute(build(ReverseEntry, key=key, entry_id=entry_id, legs=given, **fields))

    def atomic(self, key: str, commands: Sequence[Any]) -> Outcome:
        """Apply ``commands`` all-or-nothing under one key."""

        return self.execute(build(AtomicBatch, key=key, commands=tuple(commands)))

    def request_payment(
        self,
        key: str,
        *,
        requester: str,
        payer: str,
        amount: Decimal | str | int,
        asset: str,
        **fields: Any,
    ) -> Outcome:
        """Ask ``payer`` to pay ``requester``; the outcome's ``entry_id`` is the request id."""

        return self.execute(
            build(
                RequestPayment,
                key=key,
                requester=requester,
                payer=payer,
                amount=amount,
                asset=asset,
                **fields,
            )
        )

    def pay_request(self, key: str, request_id: uuid.UUID, **fields: Any) -> Outcome:
        """Pay an open request in full (at most once)."""

        return self.execute(build(PayRequest, key=key, request_id=request_id, **fields))

    def decline_request(self, key: str, request_id: uuid.UUID, **fields: Any) -> Outcome:
        """Decline or cancel an open request; it can no longer be paid."""

        return self.execute(build(DeclineRequest, key=key, request_id=request_id, **fields))

    def asset(self, code: str) -> Asset:
        """An ISO 4217 currency or a declared asset, with its scale (UnknownAsset if
        neither)."""
        iso = iso_currency(code)
        if iso is not None:
            return iso
        sid = asset_stream_id(code)
        found = self.store.load_streams([sid]).get(sid)
        if found is None:
            raise UnknownAsset(f"asset {code!r} is not an ISO 4217 currency and was not declared")
        return Asset(code, int(events.decode(found[0].state)["scale"]))

    def request_status(self, request_id: uuid.UUID) -> str:
        """``open``, ``paid`` or ``declined``; EntryNotFound if there is no such request."""
        found = self.store.load_streams([request_id]).get(request_id)
        state = None if found is None else events.entry_state_from(*found)
        if state is None or state.kind != "request" or state.status is None:
            raise EntryNotFound(f"no request with id {request_id}")
        return state.status

    def expire_due(self, now: datetime | None = None, *, limit: int = 1000) -> list[Outcome]:
        """Release every hold whose deadline is at or before ``now`` (idempotent)."""

        at = now or self._clock()
        due = self.store.due_holds(at, limit)
        commands = [build(ExpireHold, key=f"expire:{hold}", hold_id=hold, now=at) for hold in due]
        return self.submit_many(commands) if commands else []

    # -- reads from the write side -----------------------------------------------------------

    def balance(self, account: str) -> AccountBalance:
        """The account's current balances, read from the store (not from a cache)."""
        sid = account_stream_id(account)
        found = self.store.load_streams([sid]).get(sid)
        if found is None:
            raise UnknownAccount(f"account {account!r} does not exist")
        return balance_of(events.account_state_from(*found))

    def __repr__(self) -> str:
        return f"Ledger({self.store.url!r})"

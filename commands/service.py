"""The write side's application service: :class:`Ledger`, an event store plus the
command handlers, group commit and the reads the write side answers.

It is given its store (any :class:`~ledger.store.EventStore`); opening one from a URL
is the adapters' business: ``ledger.Ledger`` (:mod:`ledger.adapters.opening`) is this
class with :meth:`open`."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self

from ledger import events
from ledger.accounts import AccountBalance, balance_of
from ledger.assets import Asset, iso_currency
from ledger.commands import builders
from ledger.commands.builders import AmountLike, LegLike, build, leg
from ledger.commands.executor import BATCH_MAX, Executor
from ledger.commands.group_commit import GroupCommitStats, GroupCommitter
from ledger.commands.models import (
    ACCOUNT_ID_RULE,
    ASSET_CODE_RULE,
    KEY_RULE,
    Command,
    DeclareAsset,
    ExpireHold,
    OpenAccount,
    aware_instant,
    gc_paused,
    parse_commands,
    valid_name,
)
from ledger.errors import (
    AccountExists,
    AssetExists,
    EntryNotFound,
    IdempotencyConflict,
    InvalidCommand,
    LimitExceeded,
    StoreError,
    UnknownAccount,
    UnknownAsset,
)
from ledger.model import EntryState, account_stream_id, asset_stream_id, entry_id_for_key
from ledger.outcome import Outcome
from ledger.risk import RiskPolicy
from ledger.sealing import Sealer, sealing
from ledger.store import EventStore

__all__ = ["AccountBalance", "Ledger", "build", "leg"]


class Ledger:
    """A double-entry ledger on an event store.

    Open one with ``ledger.Ledger.open(url)``, or give it a store. Every write takes
    an idempotency key: the same key and request return the original outcome without
    applying anything again; the same key with another request raises
    :class:`~ledger.errors.IdempotencyConflict`.

    Thread-safe, and made to be shared: use one object per process. Writes from
    concurrent threads (and from :class:`~ledger.AsyncLedger` tasks on it) share
    transactions (group commit, see :mod:`ledger.commands.group_commit`): each caller
    returns once its own command has committed. Any number of processes may write to
    the same store; optimistic concurrency keeps them correct.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        clock: Callable[[], datetime] | None = None,
        risk: RiskPolicy | None = None,
        group_commands_max: int | None = None,
        queue_commands_max: int | None = None,
        pause_gc: bool = False,
        keyring: Sealer | None = None,
    ) -> None:
        self.store = store
        #: Seals the personal fields of this ledger's new events and opens them on
        #: reads (None: written plain); see :mod:`ledger.adapters.crypto`.
        self.keyring = keyring
        self._executor = Executor(store, clock=clock, risk=risk, pause_gc=pause_gc)
        self._clock = clock or (lambda: datetime.now(UTC))
        limits = {
            name: value
            for name, value in (
                ("group_commands_max", group_commands_max),
                ("queue_commands_max", queue_commands_max),
            )
            if value is not None
        }
        self._committer = GroupCommitter(self._executor, store, sealer=keyring, **limits)
        self._closed = False
        self._closing = threading.Lock()

    def close(self) -> None:
        """Finish the writes already submitted, then release the store's connections.
        Afterwards every read and write raises :class:`~ledger.errors.StoreError`
        ("the ledger is closed"); closing again does nothing (a close from another
        thread meanwhile returns once the first has finished)."""
        with self._closing:
            # Closed at once, so that reads begun from now on are refused rather than
            # racing the store's close; but a close the committer refuses (RuntimeError,
            # on a loop that commits this ledger's groups) leaves the ledger as it was.
            was_closed, self._closed = self._closed, True
            try:
                self._committer.close()
            except RuntimeError:
                self._closed = was_closed
                raise
            self.store.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _open_store(self) -> EventStore:
        """The store, for a read; StoreError once the ledger is closed (a store's own
        error after its close may look like an outage worth retrying)."""
        if self._closed:
            raise StoreError("the ledger is closed")
        return self.store

    def __enter__(self) -> Self:
        self._open_store()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def group_commit_stats(self) -> GroupCommitStats:
        """Counters of the group-commit path (transactions, commands, fairness)."""
        return self._committer.stats

    # -- the general write path -----------------------------------------------------------

    def submit_many(self, commands: Sequence[Command | Mapping[str, Any]]) -> list[Outcome]:
        """Apply commands in one storage transaction; never raises for a single
        command's rejection: each gets its own :class:`Outcome`.

        The transaction may also carry commands of other callers (group commit); each
        command is still all-or-nothing on its own. Commands are models or plain
        mappings with a ``kind`` (see :func:`~ledger.commands.models.parse_commands`);
        an invalid mapping raises :class:`~ledger.errors.InvalidCommand` and nothing
        is applied."""
        return self._committer.run(parse_commands(commands))

    def submit_all(
        self, commands: Sequence[Command | Mapping[str, Any]], *, chunk_size: int = 10_000
    ) -> list[Outcome]:
        """The throughput path for many commands: ``chunk_size`` per transaction (at
        most 10,000), each chunk decided while the previous one is written. Each command
        is atomic and retry-safe under its key; the list as a whole is not one
        transaction (after a crash, resubmit it: applied commands replay). Other
        writers of this object wait until it returns.

        Commands may be given as plain mappings (``{"kind": "post_entry", "key": ...,
        "legs": [...]}``): they are validated in bulk, which is faster than building
        the models one by one. An invalid one raises
        :class:`~ledger.errors.InvalidCommand` before anything is applied."""
        _count(chunk_size, "chunk_size", BATCH_MAX)
        pause = self._executor.pause_gc
        with gc_paused(pause), sealing(self.keyring):
            parsed = parse_commands(commands, pause_gc=pause)
            with self._committer.exclusive() as executor:
                outcomes = executor.run_chunked(parsed, chunk_size)
            # Freed while the collector still sleeps: it need not scan them once more.
            del parsed
        return outcomes

    def submit(self, command: Command | Mapping[str, Any]) -> Outcome:
        """Apply one command and return its outcome."""
        return self.submit_many([command])[0]

    def execute(self, command: Command | Mapping[str, Any]) -> Outcome:
        """Apply one command; raise its typed error unless it applied."""
        return self.submit(command).raise_for_status()

    # -- convenience commands (raise typed errors; see ledger.commands.builders) ---------

    def declare_asset(self, code: str, scale: int, *, key: str | None = None) -> Outcome:
        """Declare a user-defined asset with ``scale`` decimals (0-18). Declaring it
        again with the same scale replays; with another scale raises ``AssetExists``."""
        command = builders.declare_asset(code, scale, key=key)
        return self._settled(self.submit(command), key, command)

    def open_account(
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
        """Open an account (see :class:`~ledger.commands.models.OpenAccount` for rules).
        Opening it again with the same settings replays; with others (under the default
        key) raises ``AccountExists``."""
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
        return self._settled(self.submit(command), key, command)

    def _settled(
        self, outcome: Outcome, key: str | None, command: DeclareAsset | OpenAccount
    ) -> Outcome:
        """``outcome.raise_for_status()``, except that a conflict under the default key
        of an asset's declaration or an account's opening (declared or opened before
        with other settings) says so: ``AssetExists`` or ``AccountExists``, not a
        conflict on a key the caller never chose."""
        if outcome.code == IdempotencyConflict.code and key is None:
            if isinstance(command, DeclareAsset):
                sid = asset_stream_id(command.code)
                found = self._open_store().load_streams([sid]).get(sid)
                if found is not None:  # else the key went to a request that was refused
                    scale = events.decode(found[0].state, unseal=False)["scale"]
                    raise AssetExists(
                        f"asset {command.code!r} is already declared with scale {scale},"
                        f" not {command.scale}"
                    )
                return outcome.raise_for_status()
            sid = account_stream_id(command.account)
            if sid in self._open_store().load_streams([sid]):
                raise AccountExists(
                    f"account {command.account!r} is already open, with other settings"
                    " (opening it again with the same ones replays)"
                )
        return outcome.raise_for_status()

    def change_limits(
        self,
        key: str,
        account: str,
        *,
        min_balance: AmountLike | None = None,
        max_balance: AmountLike | None = None,
    ) -> Outcome:
        """Replace an account's balance bounds (``None``: unbounded on that side);
        ``BalanceRuleViolated`` if its balances are outside the new ones."""
        return self.execute(
            builders.change_limits(key, account, min_balance=min_balance, max_balance=max_balance)
        )

    def freeze(
        self, key: str, account: str, *, mode: Literal["debits", "all"] = "all", reason: str = ""
    ) -> Outcome:
        """Freeze an account: no debits (``mode="debits"``) or no postings and new
        holds at all (``"all"``); holds can still be voided and expire. Later writes
        that would move it raise ``AccountFrozen``."""
        return self.execute(builders.freeze(key, account, mode=mode, reason=reason))

    def unfreeze(self, key: str, account: str, *, reason: str = "") -> Outcome:
        """Lift a freeze (``AccountNotFrozen`` if there is none)."""
        return self.execute(builders.unfreeze(key, account, reason=reason))

    def close_account(self, key: str, account: str, *, reason: str = "") -> Outcome:
        """Close an account for good, at a zero balance with no open holds
        (``AccountNotEmpty`` otherwise); later writes to it raise ``AccountClosed``."""
        return self.execute(builders.close_account(key, account, reason=reason))

    def post(self, key: str, legs: Iterable[LegLike], **fields: Any) -> Outcome:
        """Post a balanced entry. ``fields``: effective_at, description, metadata,
        expected_versions."""
        return self.execute(builders.post(key, legs, **fields))

    def transfer(
        self, key: str, *, debit: str, credit: str, amount: AmountLike, asset: str, **fields: Any
    ) -> Outcome:
        """Post a two-leg entry debiting ``debit`` and crediting ``credit`` with a
        positive ``amount``."""
        return self.execute(
            builders.transfer(key, debit=debit, credit=credit, amount=amount, asset=asset, **fields)
        )

    def hold(self, key: str, legs: Iterable[LegLike], **fields: Any) -> Outcome:
        """Reserve amounts as a pending entry; ``fields`` may include expires_at."""
        return self.execute(builders.hold(key, legs, **fields))

    def post_hold(
        self, key: str, hold_id: uuid.UUID, legs: Iterable[LegLike] | None = None, **fields: Any
    ) -> Outcome:
        """Post a hold in full, or in part with ``legs``; the rest is released."""
        return self.execute(builders.post_hold(key, hold_id, legs, **fields))

    def void_hold(self, key: str, hold_id: uuid.UUID, **fields: Any) -> Outcome:
        """Release a hold without posting."""
        return self.execute(builders.void_hold(key, hold_id, **fields))

    def reverse(
        self, key: str, entry_id: uuid.UUID, legs: Iterable[LegLike] | None = None, **fields: Any
    ) -> Outcome:
        """Reverse a posting fully, or partly with ``legs`` or with ``amount=`` and
        ``account=`` (see :class:`~ledger.commands.models.ReverseEntry`); never beyond
        what was posted."""
        return self.execute(builders.reverse(key, entry_id, legs, **fields))

    def atomic(self, key: str, commands: Sequence[Any]) -> Outcome:
        """Apply ``commands`` all-or-nothing under one key."""
        return self.execute(builders.atomic(key, commands))

    def request_payment(
        self,
        key: str,
        *,
        requester: str,
        payer: str,
        amount: AmountLike,
        asset: str,
        **fields: Any,
    ) -> Outcome:
        """Ask ``payer`` to pay ``requester``; the outcome's ``entry_id`` is the request id."""
        return self.execute(
            builders.request_payment(
                key, requester=requester, payer=payer, amount=amount, asset=asset, **fields
            )
        )

    def pay_request(self, key: str, request_id: uuid.UUID, **fields: Any) -> Outcome:
        """Pay an open request in full (at most once)."""
        return self.execute(builders.pay_request(key, request_id, **fields))

    def decline_request(self, key: str, request_id: uuid.UUID, **fields: Any) -> Outcome:
        """Decline or cancel an open request; it can no longer be paid."""
        return self.execute(builders.decline_request(key, request_id, **fields))

    def expire_due(self, now: datetime | None = None, *, limit: int = 1000) -> list[Outcome]:
        """Release every hold whose deadline is at or before ``now`` (idempotent)."""
        commands = self.due_expiries(now, limit=limit)
        return self.submit_many(commands) if commands else []

    def due_expiries(self, now: datetime | None = None, *, limit: int = 1000) -> list[ExpireHold]:
        """The commands that release the holds due at ``now`` (what :meth:`expire_due`
        submits)."""
        _count(limit, "limit", BATCH_MAX)
        at = self._clock() if now is None else aware_instant(now, "now")
        due = self._open_store().due_holds(at, limit)
        return [build(ExpireHold, key=f"expire:{hold}", hold_id=hold, now=at) for hold in due]

    # -- reads from the write side -----------------------------------------------------------

    def asset(self, code: str) -> Asset:
        """An ISO 4217 currency or a declared asset, with its scale (UnknownAsset if
        neither)."""
        valid_name(ASSET_CODE_RULE, code, "asset")
        iso = iso_currency(code)
        if iso is not None:
            return iso
        sid = asset_stream_id(code)
        found = self._open_store().load_streams([sid]).get(sid)
        if found is None:
            raise UnknownAsset(f"asset {code!r} is not an ISO 4217 currency and was not declared")
        return Asset(code, int(events.decode(found[0].state, unseal=False)["scale"]))

    def request_status(self, request_id: uuid.UUID) -> str:
        """``open``, ``paid`` or ``declined``; EntryNotFound if there is no such request."""
        _uuid(request_id, "request_id")
        found = self._open_store().load_streams([request_id]).get(request_id)
        state = None if found is None else events.entry_state_from(*found)
        if state is None or state.kind != "request" or state.status is None:
            raise EntryNotFound(f"no request with id {request_id}")
        return state.status

    def entry(self, entry_id: uuid.UUID) -> EntryState | None:
        """The entry's current state (kind, legs, hold status, what remains
        reversible), read from the store; None if there is no such entry."""
        _uuid(entry_id, "entry_id")
        found = self._open_store().load_streams([entry_id]).get(entry_id)
        return None if found is None else events.entry_state_from(*found)

    def recorded(self, key: str) -> Outcome | None:
        """The outcome recorded under idempotency ``key`` (marked replayed), or None if
        the key was never used (or its command was invalid: that burns no key)."""
        key_id = entry_id_for_key(valid_name(KEY_RULE, key, "key"))
        records, _ = self._open_store().read({key_id}, [])
        record = records.get(key_id)
        return None if record is None else Outcome.from_record(key, record.outcome)

    def balance(self, account: str) -> AccountBalance:
        """The account's current balances, read from the store (not from a cache)."""
        sid = account_stream_id(valid_name(ACCOUNT_ID_RULE, account, "account"))
        found = self._open_store().load_streams([sid]).get(sid)
        if found is None:
            raise UnknownAccount(f"account {account!r} does not exist")
        return balance_of(events.account_state_from(*found))

    def __repr__(self) -> str:
        return f"Ledger({self.store.url!r})"


def _count(value: object, what: str, most: int) -> int:
    """A count argument: an int from 1 to ``most`` (InvalidCommand otherwise;
    LimitExceeded above ``most``)."""
    if type(value) is not int or value < 1:
        raise InvalidCommand(f"{what} is a whole number from 1 to {most}, not {value!r:.40}")
    if value > most:
        raise LimitExceeded(f"{what} {value} is over the limit of {most}")
    return value


def _uuid(value: object, what: str) -> None:
    """Refuse an id that is not a :class:`uuid.UUID` (InvalidCommand)."""
    if not isinstance(value, uuid.UUID):
        raise InvalidCommand(f"{what} is a UUID, not {type(value).__name__}")

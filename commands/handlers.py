"""One handler per write command: decide against a :class:`Tx`, emit events.

A handler raises :class:`~ledger.errors.InvalidCommand` for a malformed request and a
:class:`~ledger.errors.CommandRejected` subclass when the state refuses it; in both
cases its ``Tx`` is discarded. It returns the kind of entry it recorded (or the name of
what it did) when the command applies.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, Literal

from ledger import events
from ledger.assets import Asset, iso_currency, plain, to_decimal, to_minor, validate_asset_code
from ledger.effects import capture_excess
from ledger.entries import minor_legs
from ledger.errors import (
    AccountClosed,
    AccountExists,
    AssetExists,
    AssetMismatch,
    ConcurrencyConflict,
    EntryNotFound,
    EntryNotReversible,
    ExceedsHold,
    HoldExpired,
    HoldNotPending,
    InvalidAmount,
    InvalidCommand,
    RequestNotOpen,
)
from ledger.model import AccountState, EntryState, Leg, account_stream_id, asset_stream_id

from .lifecycle import change_limits, close_account, freeze_account, unfreeze_account
from .models import (
    ACCOUNT_COMMANDS,
    ChangeLimits,
    CloseAccount,
    Command,
    DeclareAsset,
    DeclineRequest,
    ExpireHold,
    FreezeAccount,
    LegInput,
    OpenAccount,
    PayRequest,
    PlaceHold,
    PostEntry,
    PostHold,
    RequestPayment,
    ReverseEntry,
    UnfreezeAccount,
    VoidHold,
)
from .working_set import Tx

__all__ = ["HANDLERS", "referenced_accounts", "referenced_assets", "referenced_entries"]


def _legs(tx: Tx, given: Sequence[LegInput]) -> tuple[Leg, ...]:
    """Convert caller legs to minor units; refuse zero legs and imbalance per asset."""
    return minor_legs(((leg.account, leg.amount, leg.asset) for leg in given), tx.asset)


def _check_pins(tx: Tx, pins: dict[str, int]) -> None:
    for name, version in pins.items():
        state = tx.ws.current_account(name)
        current = 0 if state is None else state.version
        if tx.ws.touched_before(name) or current != version:
            raise ConcurrencyConflict(
                f"account {name!r} is no longer at version {version}; re-read it and retry"
            )


def declare_asset(cmd: DeclareAsset, tx: Tx, entry_id: uuid.UUID) -> str:
    """Declare a user-defined asset once."""
    validate_asset_code(cmd.code)
    # First: the known assets include the ISO currencies already used, which were
    # never declared (their asset stream does not exist).
    if iso_currency(cmd.code) is not None:
        raise InvalidCommand(f"{cmd.code!r} is an ISO 4217 currency; it needs no declaration")
    if tx.asset_is_declared(cmd.code):
        raise AssetExists(f"asset {cmd.code!r} is already declared")
    asset = Asset(cmd.code, cmd.scale)
    tx.new_assets[cmd.code] = asset
    tx.emit(events.asset_declared(asset, asset_stream_id(cmd.code), cmd.key, tx.ws.now))
    return "declare_asset"


def open_account(cmd: OpenAccount, tx: Tx, entry_id: uuid.UUID) -> str:
    """Open an account with its asset and balance bounds."""
    asset = tx.asset(cmd.asset)
    low = None if cmd.min_balance is None else to_minor(cmd.min_balance, asset)
    high = None if cmd.max_balance is None else to_minor(cmd.max_balance, asset)
    if low is not None and high is not None and low > high:
        raise InvalidCommand("min_balance is greater than max_balance")
    if (low is not None and low > 0) or (high is not None and high < 0):
        raise InvalidCommand("the bounds must allow the opening balance of zero")
    if tx.account(cmd.account) is not None:
        raise AccountExists(f"account {cmd.account!r} is already open")
    state = AccountState(
        account=cmd.account,
        stream_id=account_stream_id(cmd.account),
        asset=asset,
        normal=cmd.normal,
        min_balance=low,
        max_balance=high,
        owner=cmd.owner,
        version=1,
        last_hash="",
    )
    event = events.account_opened(state, cmd.key, cmd.metadata, tx.ws.now)
    state.last_hash = events.state_hash(event.state)
    tx.accounts[cmd.account] = state
    tx.emit(event)
    return "open_account"


def post_entry(cmd: PostEntry, tx: Tx, entry_id: uuid.UUID) -> str:
    """Post a balanced entry."""
    legs = _legs(tx, cmd.legs)
    _check_pins(tx, cmd.expected_versions)
    tx.apply_legs(entry_id, legs, pending=False)
    tx.check_rules()
    _emit_entry(cmd, tx, entry_id, "posted", legs)
    _remember_posting(tx, entry_id, "posted", legs)
    return "posted"


def _remember_posting(tx: Tx, entry_id: uuid.UUID, kind: Any, legs: tuple[Leg, ...]) -> None:
    """Make a new posting visible to later commands of the same batch (a reversal);
    its state is only built if one of them asks for it."""
    tx.new_postings[entry_id] = (kind, legs, tx.events[-1])


def place_hold(cmd: PlaceHold, tx: Tx, entry_id: uuid.UUID) -> str:
    """Reserve amounts as a pending entry."""
    legs = _legs(tx, cmd.legs)
    # A backdated hold (an import of history) may already be due; it may not expire
    # before it takes effect.
    if cmd.expires_at is not None and cmd.expires_at <= (cmd.effective_at or tx.ws.now):
        raise InvalidCommand("expires_at is not after the hold takes effect")
    _check_pins(tx, cmd.expected_versions)
    tx.apply_legs(entry_id, legs, pending=True)
    tx.check_rules()
    _emit_entry(cmd, tx, entry_id, "pending", legs, expires_at=cmd.expires_at)
    tx.holds_opened.append((entry_id, cmd.expires_at))
    tx.entries[entry_id] = EntryState(
        entry_id=entry_id,
        kind="pending",
        legs=legs,
        version=1,
        last_hash=events.state_hash(tx.events[-1].state),
        status="pending",
        expires_at=cmd.expires_at,
        effective_at=cmd.effective_at or tx.ws.now,
        recorded_at=tx.ws.now,
    )
    return "pending"


def _open_hold(tx: Tx, hold_id: uuid.UUID, *, capturing: bool = False) -> EntryState:
    hold = tx.entry(hold_id)
    if hold is None or hold.kind != "pending":
        raise EntryNotFound(f"no hold with id {hold_id}")
    if capturing and hold.status == "expired":  # the reason it cannot be captured
        when = hold.expires_at.isoformat() if hold.expires_at else "its deadline"
        raise HoldExpired(f"hold {hold_id} expired at {when} and was released")
    if hold.status != "pending":
        raise HoldNotPending(f"hold {hold_id} is already {hold.status}")
    return hold


def post_hold(cmd: PostHold, tx: Tx, entry_id: uuid.UUID) -> str:
    """Post a hold in full or in part; release the rest."""
    hold = _open_hold(tx, cmd.hold_id, capturing=True)
    _check_deadline(hold, cmd.effective_at, tx.ws.now)
    when = _not_before(cmd.effective_at, tx.ws.now, hold, "capture")
    legs = hold.legs if cmd.legs is None else _legs(tx, cmd.legs)
    excess = capture_excess(legs, hold.legs, scale_of=lambda code: tx.asset(code).scale)
    if excess is not None:
        raise ExceedsHold(f"hold {cmd.hold_id}: {excess}")
    tx.apply_legs(entry_id, hold.legs, pending=True, sign=-1)
    tx.apply_legs(entry_id, legs, pending=False)
    tx.check_rules()
    _emit_entry(
        cmd, tx, entry_id, "capture", legs, releases=hold.legs, hold=hold.entry_id, when=when
    )
    _remember_posting(tx, entry_id, "capture", legs)
    hold.status = "posted"
    tx.update_entry(hold, entry_id)
    tx.holds_closed.append(hold.entry_id)
    return "capture"


def _check_deadline(hold: EntryState, effective_at: Any, now: Any) -> None:
    """Refuse a capture that comes at or after the hold's deadline.

    The deadline is about when the capture arrives (its recorded time, ``now``), not
    about the date it is given: a capture recorded late is refused even if backdated,
    whether or not ``expire_due`` has run yet. A hold recorded already past its
    deadline is history being imported (an import records every line at its own time,
    the history's times are in the effective dates), so its capture is judged by its
    effective date alone. A capture dated at or after the deadline is always refused.
    """
    deadline = hold.expires_at
    if deadline is None:
        return
    live = hold.recorded_at is None or hold.recorded_at < deadline
    if live and now >= deadline:
        raise HoldExpired(
            f"hold {hold.entry_id} expired at {deadline.isoformat()}; a capture recorded at "
            f"{now.isoformat()} is too late, whatever its effective date"
        )
    if (effective_at or now) >= deadline:
        raise HoldExpired(f"hold {hold.entry_id} expired at {deadline.isoformat()}")


#: How far an entry dated by another process's clock may be ahead of this one's: an
#: undated capture, void or reversal of an entry dated less far ahead than this takes
#: effect with the entry (clocks of servers differ by milliseconds; refusing would fail
#: a capture made at once on another server), one dated further ahead is refused.
CLOCK_SKEW_TOLERANCE = timedelta(minutes=1)


def _not_before(effective_at: Any, now: Any, entry: EntryState, what: str) -> Any:
    """When a capture, void or reversal takes effect: its ``effective_at``, or ``now``.
    Refused (InvalidCommand) before the entry it resolves or reverses takes effect:
    balances as of a time between the two would release a hold not placed yet
    (negative pending) or give back money not moved yet. Undated, it takes effect
    ``now``, or with its entry if that is dated at most :data:`CLOCK_SKEW_TOLERANCE`
    later (another process's clock)."""
    if effective_at is None and entry.effective_at - CLOCK_SKEW_TOLERANCE <= now:
        return max(now, entry.effective_at)
    when = effective_at or now
    if when < entry.effective_at:
        said = "effective_at" if effective_at is not None else "now (no effective_at given)"
        raise InvalidCommand(
            f"{said} {when.isoformat()} is before entry {entry.entry_id} takes "
            f"effect ({entry.effective_at.isoformat()}); a {what} cannot take effect before it"
        )
    return when


def void_hold(cmd: VoidHold, tx: Tx, entry_id: uuid.UUID) -> str:
    """Release a hold."""
    hold = _open_hold(tx, cmd.hold_id)
    when = _not_before(cmd.effective_at, tx.ws.now, hold, "void")
    return _release(tx, cmd, hold, entry_id, kind="void", status="voided", when=when)


def expire_hold(cmd: ExpireHold, tx: Tx, entry_id: uuid.UUID) -> str:
    """Release a hold whose deadline has passed."""
    hold = _open_hold(tx, cmd.hold_id)
    if hold.expires_at is None or hold.expires_at > cmd.now:
        raise HoldNotPending(f"hold {cmd.hold_id} is not due to expire at {cmd.now.isoformat()}")
    return _release(tx, cmd, hold, entry_id, kind="expire", status="expired")


def _release(
    tx: Tx,
    cmd: VoidHold | ExpireHold,
    hold: EntryState,
    entry_id: uuid.UUID,
    *,
    kind: Literal["void", "expire"],
    status: Literal["voided", "expired"],
    when: Any = None,
) -> str:
    tx.apply_legs(entry_id, hold.legs, pending=True, sign=-1)
    tx.check_rules()
    _emit_entry(cmd, tx, entry_id, kind, (), releases=hold.legs, hold=hold.entry_id, when=when)
    hold.status = status
    tx.update_entry(hold, entry_id)
    tx.holds_closed.append(hold.entry_id)
    return str(kind)


def reverse_entry(cmd: ReverseEntry, tx: Tx, entry_id: uuid.UUID) -> str:
    """Reverse (part of) a posting with a new linked entry."""
    original = tx.entry(cmd.entry_id)
    if original is None:
        raise EntryNotFound(f"no entry with id {cmd.entry_id}")
    if original.kind not in ("posted", "capture"):
        raise EntryNotReversible(
            f"entry {cmd.entry_id} is a {original.kind} entry; only postings reverse"
        )
    when = _not_before(cmd.effective_at, tx.ws.now, original, "reversal")
    if cmd.amount is not None and cmd.account is not None:
        legs = _proportional_reversal(tx, original, cmd.account, cmd.amount)
        _consume_reversible(tx, original, legs)
    elif cmd.legs is None:
        legs = tuple(
            Leg(leg.account, leg.asset, -rest if leg.amount > 0 else rest)
            for leg, rest in zip(original.legs, original.remaining, strict=True)
            if rest
        )
        if not legs:
            raise EntryNotReversible(f"entry {cmd.entry_id} is already fully reversed")
        original.remaining = [0] * len(original.remaining)
    else:
        legs = _legs(tx, cmd.legs)
        _consume_reversible(tx, original, legs)
    tx.apply_legs(entry_id, legs, pending=False)
    tx.check_rules()
    _emit_entry(cmd, tx, entry_id, "reversal", legs, reverses=original.entry_id, when=when)
    tx.update_entry(original, entry_id)
    return "reversal"


def _proportional_reversal(
    tx: Tx, original: EntryState, account: str, amount: Any
) -> tuple[Leg, ...]:
    """Legs giving back ``amount`` on ``account``, taken from the legs on the other
    side of the entry in their order (each up to what is left of it)."""
    anchors = [leg for leg in original.legs if leg.account == account]
    if not anchors:
        raise EntryNotReversible(f"entry {original.entry_id} has no leg on {account!r}")
    asset = anchors[0].asset
    minor = to_minor(amount, tx.asset(asset))
    if minor <= 0:
        raise InvalidAmount("the amount to reverse must be positive")
    side = 1 if anchors[0].amount > 0 else -1
    legs = [Leg(account, asset, -side * minor)]
    need = minor
    for leg, rest in zip(original.legs, original.remaining, strict=True):
        if need == 0:
            break
        if leg.asset == asset and leg.account != account and (leg.amount > 0) != (side > 0):
            take = min(need, rest)
            if take:
                legs.append(Leg(leg.account, asset, side * take))
                need -= take
    if need:
        raise _beyond_reversible(tx, original, account, asset, asked=minor, left=minor - need)
    return tuple(legs)


def _beyond_reversible(
    tx: Tx, original: EntryState, account: str, code: str, *, asked: int, left: int
) -> EntryNotReversible:
    """The error of a reversal of ``asked`` minor units on ``account`` when only
    ``left`` remain to reverse, the amounts written as decimals of the asset."""
    asset = tx.asset(code)
    return EntryNotReversible(
        f"reversing {plain(to_decimal(asked, asset))} {code} on {account!r} exceeds what is "
        f"left to reverse of entry {original.entry_id} ({plain(to_decimal(left, asset))} {code})"
    )


def _consume_reversible(tx: Tx, original: EntryState, legs: Sequence[Leg]) -> None:
    for leg in legs:
        same = [s for s in original.legs if s.account == leg.account and s.asset == leg.asset]
        if same and all((s.amount > 0) == (leg.amount > 0) for s in same):
            side, back = ("debited", "credit") if leg.amount > 0 else ("credited", "debit")
            raise EntryNotReversible(
                f"a reversal gives the original's legs back: entry {original.entry_id} "
                f"{side} {leg.account!r}, so its reversal must {back} it (the other sign)"
            )
        need = abs(leg.amount)
        for index, source in enumerate(original.legs):
            if need == 0:
                break
            opposite = (source.amount > 0) != (leg.amount > 0)
            if source.account == leg.account and source.asset == leg.asset and opposite:
                take = min(need, original.remaining[index])
                original.remaining[index] -= take
                need -= take
        if need:
            asked = abs(leg.amount)
            raise _beyond_reversible(
                tx, original, leg.account, leg.asset, asked=asked, left=asked - need
            )


def request_payment(cmd: RequestPayment, tx: Tx, entry_id: uuid.UUID) -> str:
    """Record a money request; nothing moves until it is paid."""
    asset = tx.asset(cmd.asset)
    minor = to_minor(cmd.amount, asset)
    if minor <= 0:
        raise InvalidAmount("a requested amount must be positive")
    if cmd.payer == cmd.requester:
        raise InvalidCommand("a request needs two different accounts")
    for name in (cmd.requester, cmd.payer):
        state = tx.require_account(name)
        if state.status == "closed":  # it could never be paid: a closed account takes nothing
            raise AccountClosed(f"account {name!r} is closed")
        if state.asset.code != asset.code:
            raise AssetMismatch(
                f"request in {asset.code} names account {name!r} which holds {state.asset.code}"
            )
    terms = (Leg(cmd.payer, asset.code, minor), Leg(cmd.requester, asset.code, -minor))
    _emit_entry(cmd, tx, entry_id, "request", (), terms=terms)
    tx.entries[entry_id] = EntryState(
        entry_id=entry_id,
        kind="request",
        legs=terms,
        version=1,
        last_hash=events.state_hash(tx.events[-1].state),
        status="open",
        expires_at=None,
        effective_at=tx.ws.now,
    )
    return "request"


def _open_request(tx: Tx, request_id: uuid.UUID) -> EntryState:
    request = tx.entry(request_id)
    if request is None or request.kind != "request":
        raise EntryNotFound(f"no request with id {request_id}")
    if request.status != "open":
        raise RequestNotOpen(f"request {request_id} is already {request.status}")
    return request


def pay_request(cmd: PayRequest, tx: Tx, entry_id: uuid.UUID) -> str:
    """Pay an open request: post its terms and close it."""
    request = _open_request(tx, cmd.request_id)
    tx.apply_legs(entry_id, request.legs, pending=False)
    tx.check_rules()
    _emit_entry(cmd, tx, entry_id, "posted", request.legs, request=request.entry_id)
    _remember_posting(tx, entry_id, "posted", request.legs)
    request.status = "paid"
    tx.update_entry(request, entry_id)
    return "posted"


def decline_request(cmd: DeclineRequest, tx: Tx, entry_id: uuid.UUID) -> str:
    """Close an open request without paying it."""
    request = _open_request(tx, cmd.request_id)
    _emit_entry(cmd, tx, entry_id, "decline", (), request=request.entry_id)
    request.status = "declined"
    tx.update_entry(request, entry_id)
    return "decline"


def _emit_entry(
    cmd: Command,
    tx: Tx,
    entry_id: uuid.UUID,
    kind: Any,
    legs: Sequence[Leg],
    *,
    releases: Sequence[Leg] = (),
    hold: uuid.UUID | None = None,
    reverses: uuid.UUID | None = None,
    expires_at: Any = None,
    request: uuid.UUID | None = None,
    terms: Sequence[Leg] = (),
    when: Any = None,
) -> None:
    """Record the command's journal entry (linked to the event before it in the write),
    taking effect ``when`` if given."""
    # The fields as a dict: a missing attribute on a pydantic model is slow to refuse.
    fields = cmd.__dict__
    # An expiry takes effect at the instant it was swept for.
    effective = when or fields.get("effective_at") or fields.get("now") or tx.ws.now
    previous = tx.last_event()
    event = events.entry_recorded(
        entry_id,
        kind=kind,
        key=cmd.key,
        fingerprint=tx.fingerprint,
        legs=legs,
        releases=releases,
        effective_at=effective,
        recorded_at=tx.ws.now,
        description=fields.get("description", ""),
        metadata=fields.get("metadata", {}),
        hold=hold,
        reverses=reverses,
        expires_at=expires_at,
        request=request,
        terms=terms,
        previous=previous,
    )
    tx.emit(event, linked_to=previous)


Handler = Callable[[Any, Tx, uuid.UUID], str]

HANDLERS: dict[type[Command], Handler] = {
    DeclareAsset: declare_asset,
    OpenAccount: open_account,
    PostEntry: post_entry,
    PlaceHold: place_hold,
    PostHold: post_hold,
    VoidHold: void_hold,
    ExpireHold: expire_hold,
    ReverseEntry: reverse_entry,
    RequestPayment: request_payment,
    PayRequest: pay_request,
    DeclineRequest: decline_request,
    ChangeLimits: change_limits,
    FreezeAccount: freeze_account,
    UnfreezeAccount: unfreeze_account,
    CloseAccount: close_account,
}


def referenced_accounts(cmd: Command) -> list[str]:
    """Accounts a command names directly (holds and reversals add their entry's)."""
    if isinstance(cmd, (OpenAccount, *ACCOUNT_COMMANDS)):
        return [cmd.account]
    if isinstance(cmd, RequestPayment):
        return [cmd.requester, cmd.payer]
    legs = getattr(cmd, "legs", None) or ()
    return [leg.account for leg in legs]


def referenced_entries(cmd: Command) -> list[uuid.UUID]:
    """Entries (holds, postings) a command refers to."""
    if isinstance(cmd, PostHold | VoidHold | ExpireHold):
        return [cmd.hold_id]
    if isinstance(cmd, ReverseEntry):
        return [cmd.entry_id]
    if isinstance(cmd, PayRequest | DeclineRequest):
        return [cmd.request_id]
    return []


def referenced_assets(cmd: Command) -> list[str]:
    """Asset codes a command names."""
    if isinstance(cmd, OpenAccount):
        return [cmd.asset]
    if isinstance(cmd, DeclareAsset):
        return [cmd.code]
    if isinstance(cmd, RequestPayment):
        return [cmd.asset]
    legs = getattr(cmd, "legs", None) or ()
    return [leg.asset for leg in legs]

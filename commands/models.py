"""Write commands: small immutable values, validated at the boundary.

Every command carries an idempotency ``key``. Amounts are ``Decimal`` or decimal
strings in major units (``"12.34"`` USD); floats, NaN and Infinity are refused. A leg's
amount is signed: positive is a debit, negative a credit.
"""

from __future__ import annotations

import gc
import math
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal, cast

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from ledger.assets import SCALE_MAX, parse_decimal
from ledger.errors import InvalidAmount, InvalidCommand

__all__ = [
    "ACCOUNT_COMMANDS",
    "DESCRIPTION_MAX_CHARS",
    "KEY_MAX_CHARS",
    "LEGS_MAX",
    "METADATA_MAX_BYTES",
    "AnyCommand",
    "AtomicBatch",
    "ChangeLimits",
    "CloseAccount",
    "Command",
    "DeclareAsset",
    "DeclineRequest",
    "ExpireHold",
    "FreezeAccount",
    "LegInput",
    "OpenAccount",
    "PayRequest",
    "PlaceHold",
    "PostEntry",
    "PostHold",
    "RequestPayment",
    "ReverseEntry",
    "UnfreezeAccount",
    "VoidHold",
    "WriteCommand",
    "gc_paused",
    "parse_commands",
]

#: Most legs in one entry.
LEGS_MAX = 64
#: Longest idempotency key.
KEY_MAX_CHARS = 256
#: Longest description.
DESCRIPTION_MAX_CHARS = 1024
#: Largest metadata object, as compact UTF-8 JSON.
METADATA_MAX_BYTES = 8192
#: Most commands in an atomic batch.
ATOMIC_BATCH_MAX = 1000
#: The largest stream version (the stores keep versions as 64-bit integers).
VERSION_MAX = 2**63 - 1

_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/+-]{0,127}$")
_ASSET_CODE = re.compile(r"^[A-Z][A-Z0-9_]{1,15}$")


class _AmountError(ValueError):
    """An amount refused inside a model (reported as InvalidAmount, see
    :func:`refusal`)."""


def _amount(value: object) -> Decimal:
    try:
        return parse_decimal(value)
    except InvalidAmount as e:
        raise _AmountError(e.message) from None


def refusal(error: ValidationError, message: str) -> InvalidCommand:
    """The typed error for a model's validation ``error`` (its first problem, said
    by ``message``): :class:`InvalidAmount` for an amount, else InvalidCommand."""
    ctx = error.errors()[0].get("ctx") or {}
    if isinstance(ctx.get("error"), _AmountError):
        return InvalidAmount(message)
    return InvalidCommand(message)


def _utf8(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid UTF-8 (contains lone surrogates)") from None
    if "\x00" in text:
        raise ValueError("text contains a NUL character (not storable as text)")
    return text


def _aware(value: datetime) -> datetime:
    try:
        offset = value.utcoffset()
    except Exception as e:  # a tzinfo of the caller's that fails: its zone is unknown
        raise ValueError(f"datetime's time zone failed: {type(e).__name__}") from None
    if value.tzinfo is None or offset is None:
        raise ValueError("datetime must be timezone-aware (e.g. UTC)")
    try:
        value.astimezone(UTC)
    except OverflowError:
        # Stored and projected in UTC: a time whose UTC form is outside years 1-9999
        # would be written and then break every reader.
        raise ValueError("datetime is out of range in UTC (years 1 to 9999)") from None
    except Exception as e:
        raise ValueError(f"datetime's time zone failed: {type(e).__name__}") from None
    return value


def aware_instant(value: object, what: str) -> datetime:
    """``value`` if it is a timezone-aware datetime within range in UTC, else
    :class:`~ledger.errors.InvalidCommand` naming ``what``."""
    if not isinstance(value, datetime):
        raise InvalidCommand(f"{what} must be a datetime, not {type(value).__name__}")
    try:
        return _aware(value)
    except ValueError as e:
        raise InvalidCommand(f"{what}: {e}") from None


def _metadata(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
    try:
        data = orjson.dumps(value)
        size = len(data)
    except TypeError as e:
        raise ValueError(f"metadata is not JSON-serialisable UTF-8: {e}") from None
    if b"null" in data and _has_non_finite(value):
        # orjson writes NaN and infinities as null: refused, not changed silently.
        raise ValueError("metadata contains NaN or an infinity (not JSON values)")
    if size > METADATA_MAX_BYTES:
        raise ValueError(f"metadata is {size} bytes; the limit is {METADATA_MAX_BYTES}")
    if b"\\u0000" in data and _has_nul(value):
        raise ValueError("metadata contains a NUL character (not storable as text)")
    return value


def _has_non_finite(value: object) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite(v) for v in value)
    return False


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


Amount = Annotated[Decimal, BeforeValidator(_amount)]
"""An exact decimal amount in major units; floats, NaN and Infinity are refused."""

Key = Annotated[str, Field(min_length=1, max_length=KEY_MAX_CHARS), AfterValidator(_utf8)]
"""An idempotency key: 1-256 characters chosen by the caller, unique per request."""

AccountId = Annotated[str, Field(pattern=_ACCOUNT_ID.pattern)]
"""A readable account id such as ``users:42:wallet`` (1-128 of ``A-Za-z0-9_.:@/+-``)."""

AssetCode = Annotated[str, Field(pattern=_ASSET_CODE.pattern)]
"""An ISO 4217 currency code or a declared asset code (2-16 of ``A-Z0-9_``)."""

Description = Annotated[str, Field(max_length=DESCRIPTION_MAX_CHARS), AfterValidator(_utf8)]
Metadata = Annotated[dict[str, JsonValue], AfterValidator(_metadata)]
AwareDatetime = Annotated[datetime, AfterValidator(_aware)]

#: The rules of the names above, for code that uses a name before (or without)
#: building a command: a read, a hash, a comparison (see :func:`valid_name`).
ACCOUNT_ID_RULE: TypeAdapter[str] = TypeAdapter(AccountId)
ASSET_CODE_RULE: TypeAdapter[str] = TypeAdapter(AssetCode)
KEY_RULE: TypeAdapter[str] = TypeAdapter(Key)


def valid_name(rule: TypeAdapter[str], value: object, what: str) -> str:
    """``value`` if it obeys ``rule`` (:data:`ACCOUNT_ID_RULE`, :data:`ASSET_CODE_RULE`
    or :data:`KEY_RULE`, strictly: only a ``str``), else InvalidCommand naming
    ``what``, as the command would refuse it."""
    try:
        return rule.validate_python(value, strict=True)
    except ValidationError as e:
        raise InvalidCommand(f"{what}: {e.errors()[0]['msg']}") from None


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")


class Command(_Frozen):
    """Base of every write command."""

    key: Key


class LegInput(_Frozen):
    """One leg as given by a caller: positive ``amount`` debits, negative credits."""

    account: AccountId
    amount: Amount
    asset: AssetCode


class DeclareAsset(Command):
    """Declare a user-defined asset (points, hours, a token) with its decimals."""

    kind: Literal["declare_asset"] = "declare_asset"
    code: AssetCode
    scale: Annotated[int, Field(ge=0, le=SCALE_MAX)]


class OpenAccount(Command):
    """Open an account in one asset, with optional balance bounds.

    ``min_balance=0`` means the account must not go negative; ``min_balance=-L`` is a
    credit limit of L; ``max_balance=0`` means it must not go positive. Bounds apply to
    the normal-oriented balance (credits minus debits for ``normal="credit"``).
    """

    kind: Literal["open_account"] = "open_account"
    account: AccountId
    asset: AssetCode
    normal: Literal["debit", "credit"] = "credit"
    min_balance: Amount | None = None
    max_balance: Amount | None = None
    owner: Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_utf8)] | None = None
    metadata: Metadata = Field(default_factory=dict)


class ChangeLimits(Command):
    """Replace an account's balance bounds (``None``: unbounded on that side). Refused
    (``BalanceRuleViolated``) if the account's balances are already outside the new
    bounds: lower a credit limit once the balance is within it."""

    kind: Literal["change_limits"] = "change_limits"
    account: AccountId
    min_balance: Amount | None = None
    max_balance: Amount | None = None


class FreezeAccount(Command):
    """Freeze an account: ``mode="debits"`` stops debit legs (money leaving a wallet),
    ``"all"`` stops every posting and new hold. Releasing holds (void, expiry) still
    works. Refused (``AccountFrozen``) if it is already frozen."""

    kind: Literal["freeze_account"] = "freeze_account"
    account: AccountId
    mode: Literal["debits", "all"] = "all"
    reason: Description = ""


class UnfreezeAccount(Command):
    """Lift a freeze. Refused (``AccountNotFrozen``) if the account is not frozen."""

    kind: Literal["unfreeze_account"] = "unfreeze_account"
    account: AccountId
    reason: Description = ""


class CloseAccount(Command):
    """Close an account for good: only at a zero balance with no open holds
    (``AccountNotEmpty`` otherwise); nothing can be posted to it afterwards."""

    kind: Literal["close_account"] = "close_account"
    account: AccountId
    reason: Description = ""


class _EntryFields(Command):
    legs: Annotated[tuple[LegInput, ...], Field(min_length=2, max_length=LEGS_MAX, strict=False)]
    effective_at: AwareDatetime | None = None
    description: Description = ""
    metadata: Metadata = Field(default_factory=dict)
    #: Pin accounts to the versions the caller read; a mismatch raises
    #: ConcurrencyConflict and writes nothing.
    expected_versions: dict[AccountId, Annotated[int, Field(ge=1, le=VERSION_MAX)]] = Field(
        default_factory=dict
    )


class PostEntry(_EntryFields):
    """Post a balanced journal entry (balanced in every asset it moves)."""

    kind: Literal["post_entry"] = "post_entry"


class PlaceHold(_EntryFields):
    """Reserve the legs' amounts as a pending entry, released at ``expires_at``."""

    kind: Literal["place_hold"] = "place_hold"
    expires_at: AwareDatetime | None = None


class PostHold(Command):
    """Post a pending hold, fully or (with ``legs``) partly; the rest is released."""

    kind: Literal["post_hold"] = "post_hold"
    hold_id: uuid.UUID
    legs: (
        Annotated[tuple[LegInput, ...], Field(min_length=2, max_length=LEGS_MAX, strict=False)]
        | None
    ) = None
    effective_at: AwareDatetime | None = None
    description: Description = ""
    metadata: Metadata = Field(default_factory=dict)


class VoidHold(Command):
    """Release a pending hold without posting anything."""

    kind: Literal["void_hold"] = "void_hold"
    hold_id: uuid.UUID
    effective_at: AwareDatetime | None = None
    description: Description = ""


class ExpireHold(Command):
    """Release a hold whose deadline has passed (issued by ``expire_due``)."""

    kind: Literal["expire_hold"] = "expire_hold"
    hold_id: uuid.UUID
    now: AwareDatetime


class ReverseEntry(Command):
    """Reverse a posted entry with a new linked entry: fully, or partly.

    A partial reversal is given either as ``legs`` (amounts to give back on the
    original entry's accounts) or as ``amount`` on ``account``: that account's leg
    gets ``amount`` back and the legs on the other side of the entry (same asset)
    give it back **in their order in the original entry**, each up to what is left of
    it. What remains reversible is tracked per leg, so refunds can never exceed what
    was posted, also when reversals race (they are decided on the entry's latest
    version).
    """

    kind: Literal["reverse_entry"] = "reverse_entry"
    entry_id: uuid.UUID
    legs: (
        Annotated[tuple[LegInput, ...], Field(min_length=2, max_length=LEGS_MAX, strict=False)]
        | None
    ) = None
    amount: Amount | None = None
    account: AccountId | None = None
    effective_at: AwareDatetime | None = None
    description: Description = ""
    metadata: Metadata = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_form(self) -> ReverseEntry:
        if (self.amount is None) != (self.account is None):
            raise ValueError("amount and account go together")
        if self.amount is not None and self.legs is not None:
            raise ValueError("give either legs or amount and account, not both")
        return self


class RequestPayment(Command):
    """Ask ``payer`` to pay ``amount`` to ``requester`` (a P2P request, a bill share).

    Nothing moves until the request is paid (:class:`PayRequest`); it can be paid or
    declined at most once.
    """

    kind: Literal["request_payment"] = "request_payment"
    requester: AccountId
    payer: AccountId
    amount: Amount
    asset: AssetCode
    effective_at: AwareDatetime | None = None
    description: Description = ""
    metadata: Metadata = Field(default_factory=dict)


class PayRequest(Command):
    """Pay an open request in full: posts payer -> requester and closes the request."""

    kind: Literal["pay_request"] = "pay_request"
    request_id: uuid.UUID
    effective_at: AwareDatetime | None = None
    description: Description = ""
    metadata: Metadata = Field(default_factory=dict)


class DeclineRequest(Command):
    """Decline (payer) or cancel (requester) an open request; it can no longer be paid."""

    kind: Literal["decline_request"] = "decline_request"
    request_id: uuid.UUID
    effective_at: AwareDatetime | None = None
    description: Description = ""
    metadata: Metadata = Field(default_factory=dict)


WriteCommand = (
    DeclareAsset
    | OpenAccount
    | PostEntry
    | PlaceHold
    | PostHold
    | VoidHold
    | ExpireHold
    | ReverseEntry
    | RequestPayment
    | PayRequest
    | DeclineRequest
    | ChangeLimits
    | FreezeAccount
    | UnfreezeAccount
    | CloseAccount
)

#: Commands that change an account's rules or lifecycle (no journal entry).
ACCOUNT_COMMANDS = (ChangeLimits, FreezeAccount, UnfreezeAccount, CloseAccount)


class AtomicBatch(Command):
    """Several commands applied all-or-nothing: if one is rejected, none applies."""

    kind: Literal["atomic_batch"] = "atomic_batch"
    commands: Annotated[
        tuple[
            Annotated[WriteCommand, Field(discriminator="kind")],
            ...,
        ],
        Field(min_length=1, max_length=ATOMIC_BATCH_MAX),
    ]


AnyCommand = Annotated[WriteCommand | AtomicBatch, Field(discriminator="kind")]
"""Any write command, told apart by its ``kind`` field."""

_COMMAND_LIST: TypeAdapter[list[AnyCommand]] = TypeAdapter(list[AnyCommand])


def parse_commands(items: Sequence[object], *, pause_gc: bool = False) -> list[Command]:
    """Commands given as models or as plain mappings (``{"kind": "post_entry", ...}``).

    Mappings are validated together, in one call into pydantic's core: for thousands
    of payments this costs about half of building the models one by one. With
    ``pause_gc`` (see :func:`gc_paused`) the cyclic garbage collector sleeps meanwhile.
    Raises :class:`~ledger.errors.InvalidCommand` naming the first invalid item;
    nothing is applied then.
    """
    if type(items) is not list and (
        not isinstance(items, Sequence) or isinstance(items, str | bytes)
    ):
        raise InvalidCommand(f"commands are a list of commands, not {type(items).__name__}")
    positions = [
        i for i, item in enumerate(items) if type(item) is dict or not isinstance(item, Command)
    ]
    if not positions:
        return cast(list[Command], list(items))
    with gc_paused(pause_gc):
        try:
            parsed = _COMMAND_LIST.validate_python([items[i] for i in positions])
        except ValidationError as e:
            first = e.errors()[0]
            index, *path = first["loc"]
            where = ".".join(str(p) for p in path[1:])  # path[0] is the kind tag
            more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
            item = positions[int(index)]
            raise refusal(
                e, f"command {item}: {where + ': ' if where else ''}{first['msg']}{more}"
            ) from None
    commands = list(items)
    for i, command in zip(positions, parsed, strict=True):
        commands[i] = command
    return cast(list[Command], commands)


@contextmanager
def gc_paused(enabled: bool = True) -> Iterator[None]:
    """Pause the cyclic garbage collector while many long-lived objects are made, if
    ``enabled`` (``Ledger.open(..., pause_gc=True)``: the collector is the host's,
    so the ledger only touches it when the application says so).

    Validating, deciding, encoding and writing a large batch allocate many small
    objects that live until the batch ends; each generational collection would scan
    them (and every cached account state) again (measured: about a fifth of the batch
    path's time). Reference counting still frees memory meanwhile; the collector
    resumes afterwards (unless the application had disabled it already).
    """
    if not enabled:
        yield
        return
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()

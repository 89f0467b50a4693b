"""The JSON Lines file format as one pydantic model: each line is one of the models
below, told apart by ``kind`` (``posted`` when absent); validation and its error
messages come from the models, and each line turns into the command it records.

The fields of entry lines are those of the export (``key``, ``kind``,
``effective_at``, ``description``, ``legs`` of ``{"account", "amount", "currency"}``,
``metadata``, and ``hold``/``reverses``/``request``/``expires_at`` naming other lines'
keys); asset, account and lifecycle lines carry the fields of their commands.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
)

from ledger.commands.models import (
    AccountId,
    AssetCode,
    ChangeLimits,
    CloseAccount,
    Command,
    DeclareAsset,
    DeclineRequest,
    Description,
    ExpireHold,
    FreezeAccount,
    Key,
    LegInput,
    Metadata,
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
from ledger.model import entry_id_for_key

__all__ = ["Line", "parse_line", "payment_legs"]


#: RFC 3339 (section 5.6) date-time: ``T`` (or ``t``, or a space, as its section 5.6
#: allows) between date and time, at most 6 fractional digits of a second (microseconds,
#: what the ledger keeps), and ``Z`` (``z``) or an offset ``+HH:MM``/``-HH:MM``.
_RFC3339 = re.compile(
    # An offset may carry seconds (+00:19:32, Amsterdam before 1937), beyond RFC 3339:
    # ledger export writes a time with the zone it was given, and must read back.
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2}(?::\d{2})?)",
    re.ASCII,
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def _instant(value: object) -> datetime:
    """A date ``YYYY-MM-DD`` (midnight UTC) or an RFC 3339 date-time with a zone
    (``2026-01-31T10:00:00Z``, ``2026-01-31T12:00:00.25+02:00``); nothing else (no week
    or ordinal dates, no basic format, no offset without its colon). More than 6
    fractional digits are refused, never truncated."""
    if not isinstance(value, str):
        raise ValueError("must be a date or an RFC 3339 string")
    if _DATE.fullmatch(value):
        try:
            midnight = date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a valid date") from None
        return datetime.combine(midnight, datetime.min.time(), tzinfo=UTC)
    match = _RFC3339.fullmatch(value)
    if match is None:
        if _RFC3339.fullmatch(value + "Z") is not None:
            raise ValueError("needs a time zone (e.g. Z or +00:00)")
        raise ValueError(
            f"{value!r} is not a date (YYYY-MM-DD) or an RFC 3339 date-time with a zone "
            "(YYYY-MM-DDTHH:MM:SS[.ffffff]Z or +HH:MM)"
        )
    day, clock, fraction, zone = match.groups()
    if fraction is not None and len(fraction) > 6:
        raise ValueError(
            f"{value!r} has {len(fraction)} fractional digits of a second; at most 6 "
            "(microseconds) are kept, and a time is never truncated"
        )
    text = f"{day}T{clock}{'.' + fraction.ljust(6, '0') if fraction else ''}"
    try:
        when = datetime.fromisoformat(text + ("+00:00" if zone in "Zz" else zone))
    except ValueError:
        raise ValueError(f"{value!r} is not a valid date-time") from None
    try:
        when.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range in UTC (years 1 to 9999)") from None
    return when


Instant = Annotated[datetime, BeforeValidator(_instant)]


def _none_is_empty(value: object) -> object:
    return {} if value is None else value


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LineLeg(_Model):
    """One leg: a signed amount as a decimal string (debits positive)."""

    account: AccountId
    amount: Annotated[str, Field(strict=True)]
    currency: AssetCode

    def to_input(self) -> LegInput:
        return LegInput.model_validate(
            {"account": self.account, "amount": self.amount, "asset": self.currency}
        )


EntryKind = Literal[
    "posted", "pending", "capture", "void", "expire", "reversal", "request", "decline"
]


class EntryLine(_Model):
    """A journal entry of any kind (see the module docstring)."""

    kind: EntryKind = "posted"
    key: Key
    effective_at: Instant | None = None
    description: Description = ""
    legs: list[LineLeg] = Field(default_factory=list)
    metadata: Annotated[Metadata, BeforeValidator(_none_is_empty)] = Field(default_factory=dict)
    hold: Key | None = None
    reverses: Key | None = None
    request: Key | None = None
    expires_at: Instant | None = None

    def command(self) -> Command:
        """The command this line records."""
        for name in _UNUSED[self.kind]:
            if getattr(self, name):  # never dropped: the file would say what did not happen
                article = "an" if self.kind == "expire" else "a"
                raise ValueError(f"{name}: {article} {self.kind} line has no {name} (unused)")
        common: dict[str, Any] = {
            "key": self.key,
            "effective_at": self.effective_at,
            "description": self.description,
            "metadata": self.metadata,
        }
        return _ENTRY_COMMANDS[self.kind](self, common, tuple(leg.to_input() for leg in self.legs))


#: The optional fields each kind of entry line does not use (empty or absent there, as
#: ``ledger export`` writes them). A payment's legs (a posted line with ``request``) are
#: the request's terms, as exported: the terms kept with the request are what is paid.
_UNUSED: dict[str, tuple[str, ...]] = {
    "posted": ("hold", "reverses", "expires_at"),
    "pending": ("hold", "reverses", "request"),
    "capture": ("reverses", "request", "expires_at"),
    "void": ("legs", "metadata", "reverses", "request", "expires_at"),
    "expire": ("legs", "metadata", "description", "reverses", "request", "expires_at"),
    "reversal": ("hold", "request", "expires_at"),
    "request": ("hold", "reverses", "request", "expires_at"),
    "decline": ("legs", "hold", "reverses", "expires_at"),
}


def _id(key: str | None) -> Any:
    if key is None:
        raise ValueError("names no entry (hold, reverses or request is missing)")
    return entry_id_for_key(key)


Common = dict[str, Any]
Legs = tuple[LegInput, ...]


def _posted(line: EntryLine, common: Common, legs: Legs) -> Command:
    if line.request is None:
        return PostEntry.model_validate({**common, "legs": legs})
    return PayRequest.model_validate({**common, "request_id": _id(line.request)})


def _pending(line: EntryLine, common: Common, legs: Legs) -> Command:
    return PlaceHold.model_validate({**common, "legs": legs, "expires_at": line.expires_at})


def _capture(line: EntryLine, common: Common, legs: Legs) -> Command:
    return PostHold.model_validate({**common, "hold_id": _id(line.hold), "legs": legs or None})


def _void(line: EntryLine, common: Common, legs: Legs) -> Command:
    fields = {k: v for k, v in common.items() if k != "metadata"}
    return VoidHold.model_validate({**fields, "hold_id": _id(line.hold)})


def _expire(line: EntryLine, common: Common, legs: Legs) -> Command:
    if line.effective_at is None:
        raise ValueError("an expire line needs effective_at (when the hold expired)")
    return ExpireHold.model_validate(
        {"key": line.key, "hold_id": _id(line.hold), "now": line.effective_at}
    )


def _reversal(line: EntryLine, common: Common, legs: Legs) -> Command:
    return ReverseEntry.model_validate(
        {**common, "entry_id": _id(line.reverses), "legs": legs or None}
    )


def _decline(line: EntryLine, common: Common, legs: Legs) -> Command:
    return DeclineRequest.model_validate({**common, "request_id": _id(line.request)})


def _request(line: EntryLine, common: Common, legs: Legs) -> Command:
    payer, requester = legs if len(legs) == 2 else (None, None)
    if (
        payer is None
        or requester is None
        or payer.amount <= 0
        or payer.amount != requester.amount.copy_negate()
    ):
        raise ValueError("a request has two legs: the payer's debit, then the requester's credit")
    return RequestPayment.model_validate(
        {
            **common,
            "payer": payer.account,
            "requester": requester.account,
            "amount": payer.amount,
            "asset": payer.asset,
        }
    )


_ENTRY_COMMANDS = {
    "posted": _posted,
    "pending": _pending,
    "capture": _capture,
    "void": _void,
    "expire": _expire,
    "reversal": _reversal,
    "decline": _decline,
    "request": _request,
}


class AssetLine(_Model):
    """Declares a user-defined asset."""

    kind: Literal["asset"]
    code: AssetCode
    scale: Annotated[int, Field(strict=True)]  # a JSON integer (true is not 1)

    def command(self) -> Command:
        return DeclareAsset(key=f"asset:{self.code}", code=self.code, scale=self.scale)


class AccountLine(_Model):
    """Opens an account (``key`` defaults to ``account:<id>``)."""

    kind: Literal["account"]
    key: Key | None = None
    account: AccountId
    asset: AssetCode
    normal: Literal["debit", "credit"] = "credit"
    min_balance: Annotated[str, Field(strict=True)] | None = None
    max_balance: Annotated[str, Field(strict=True)] | None = None
    owner: str | None = None
    metadata: Metadata = Field(default_factory=dict)

    def command(self) -> Command:
        fields = self.model_dump(exclude={"kind", "key"})
        return OpenAccount.model_validate({**fields, "key": self.key or f"account:{self.account}"})


class _CommandLine(_Model):
    """A lifecycle line: the command's own fields."""

    model_config = ConfigDict(frozen=True, extra="allow")

    kind: str

    def command(self) -> Command:
        return _LIFECYCLE[self.kind].model_validate(self.model_dump())


_LIFECYCLE: dict[str, type[Command]] = {
    "change_limits": ChangeLimits,
    "freeze_account": FreezeAccount,
    "unfreeze_account": UnfreezeAccount,
    "close_account": CloseAccount,
}


def _tag(value: Any) -> str:
    kind = value.get("kind", "posted") if isinstance(value, dict) else "posted"
    if kind in ("asset", "account"):
        return str(kind)
    if kind in _LIFECYCLE:
        return "lifecycle"
    return "entry"


Line = Annotated[
    Annotated[EntryLine, Tag("entry")]
    | Annotated[AssetLine, Tag("asset")]
    | Annotated[AccountLine, Tag("account")]
    | Annotated[_CommandLine, Tag("lifecycle")],
    Discriminator(_tag),
]
"""One line of the file."""

_LINE: TypeAdapter[Line] = TypeAdapter(Line)


def parse_line(text: str | bytes) -> Command:
    """One JSON line as the command it records; ValueError with a readable reason."""
    try:
        line = _LINE.validate_json(text)
    except ValidationError as e:
        raise ValueError(_reason(e, skip=1)) from None
    _names_once(text)
    try:
        return line.command()
    except ValidationError as e:  # the command's own rules
        raise ValueError(_reason(e, skip=0)) from None


def payment_legs(text: str | bytes) -> tuple[LegInput, ...]:
    """The legs a payment line (a posted line naming a ``request``, already parsed by
    :func:`parse_line`) says it moves: its command pays the request's own terms, so the
    import compares the two before anything is applied."""
    line = _LINE.validate_json(text)
    assert isinstance(line, EntryLine)
    return tuple(leg.to_input() for leg in line.legs)


def _unique(pairs: list[tuple[str, Any]]) -> None:
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            raise ValueError(f"a JSON object names {name!r} twice (which value counts is unclear)")
        seen.add(name)


def _names_once(text: str | bytes) -> None:
    """Refuse an object that names a field twice: JSON readers differ on which value
    counts (pydantic's keeps the last), so another tool could read another amount or
    account from the same line. Called on JSON already validated (so depth and syntax
    are checked); numbers are not converted, only names compared."""
    json.loads(
        text,
        object_pairs_hook=_unique,
        parse_int=len,
        parse_float=len,
        parse_constant=len,
    )


def _reason(error: ValidationError, *, skip: int) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"][skip:])
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    message = first["msg"].removeprefix("Value error, ")
    return f"{where + ': ' if where else ''}{message}{more}"

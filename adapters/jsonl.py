"""JSON Lines import and export of entries (``ledger import`` / ``ledger export``).

One entry per line::

    {"key": "<idempotency key>", "effective_at": "2026-01-31" or RFC 3339,
     "description": "...", "legs": [{"account": "...", "amount": "-12.50", "currency": "USD"}],
     "metadata": {...}}

Positive amounts are debits, negative amounts credits. Optional fields carry the other
kinds of entries, so that every entry round-trips: ``"kind"`` (``posted`` by default,
``pending``, ``capture``, ``void``, ``expire``, ``reversal``, ``request``, ``decline``),
``"hold"`` (the key of the hold a capture, void or expiry resolves), ``"reverses"``
(the key of the entry a reversal gives back), ``"request"`` (the key of the money
request a payment or a decline closes; a request's ``legs`` are its terms, the payer's
debit and the requester's credit) and ``"expires_at"`` (of a pending entry). A line
``{"kind": "asset", "code": "PTS", "scale": 3}`` declares a user-defined asset; a line
``{"kind": "account", "account": "Assets:Bank", "asset": "USD", "normal": "debit",
"min_balance": "0", "max_balance": null, "owner": null, "metadata": {}}`` opens an
account (``key`` defaults to ``account:<id>``); lines of kind ``change_limits``,
``freeze_account``, ``unfreeze_account`` and ``close_account`` carry the lifecycle
commands with their own fields. Export writes all of them, in log order.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

import orjson
from ledger.commands.models import (
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
from pydantic import ValidationError

from ledger.assets import Asset, iso_currency, plain, to_decimal, to_minor
from ledger.errors import LedgerError, UnbalancedEntry, UnknownAsset
from ledger.events import (
    TOPIC_ACCOUNT_CHANGED,
    TOPIC_ACCOUNT_OPENED,
    TOPIC_ASSET_DECLARED,
    TOPIC_ENTRY,
    LogEvent,
)
from ledger.facade import Ledger
from ledger.model import entry_id_for_key

__all__ = ["ImportReport", "LineError", "export_lines", "import_lines", "parse_line"]

_CHUNK = 2000


@dataclass(frozen=True, slots=True)
class LineError:
    """Why one input line was refused."""

    line: int
    message: str


@dataclass(slots=True)
class ImportReport:
    """What an import did."""

    lines: int = 0
    applied: int = 0
    replayed: int = 0
    rejected: int = 0
    conflicts: int = 0
    invalid: int = 0
    errors: list[LineError] | None = None


def _when(text: Any, field: str) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"{field} must be a date or RFC 3339 string")
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"{field} needs a time zone (e.g. Z or +00:00)")
    return value


def parse_line(text: str) -> Command:
    """One JSON line as a command; raises ValueError with a readable reason."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise ValueError(f"malformed JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError("a line must be a JSON object")
    kind = data.get("kind", "posted")
    try:
        if kind == "account":
            fields = {k: v for k, v in data.items() if k != "kind"}
            fields.setdefault("key", f"account:{data.get('account')}")
            return OpenAccount.model_validate(fields)
        if kind in _ACCOUNT_CHANGES:
            return _ACCOUNT_CHANGES[kind].model_validate(data)
        if kind == "asset":
            return DeclareAsset.model_validate(
                {
                    "key": f"asset:{data.get('code')}",
                    "code": data.get("code"),
                    "scale": data.get("scale"),
                }
            )
        build = _BUILDERS.get(kind)
        if build is None:
            raise ValueError(f"unknown kind {kind!r}")
        command: Command = build(data, _common(data))
        return command
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{where}: {first['msg']}") from None


def _common(data: dict[str, Any]) -> dict[str, Any]:
    """The fields every entry line shares, validated as far as JSON alone allows."""
    key = data.get("key")
    if not isinstance(key, str):
        raise ValueError("key must be a string")
    raw_legs = data.get("legs") or []
    if not isinstance(raw_legs, list) or not all(isinstance(leg, dict) for leg in raw_legs):
        raise ValueError("legs must be a list of objects")
    legs = tuple(
        LegInput(account=leg.get("account"), amount=leg.get("amount"), asset=leg.get("currency"))
        for leg in raw_legs
    )
    effective = _when(data["effective_at"], "effective_at") if "effective_at" in data else None
    return {
        "key": key,
        "legs": legs,
        "effective_at": effective,
        "description": data.get("description", ""),
        "metadata": data.get("metadata") or {},
    }


def _hold(data: dict[str, Any], field: str = "hold") -> uuid.UUID:
    return entry_id_for_key(str(data.get(field, "")))


def _pending(data: dict[str, Any], c: dict[str, Any]) -> Command:
    expires = _when(data["expires_at"], "expires_at") if data.get("expires_at") else None
    return PlaceHold.model_validate({**c, "expires_at": expires})


def _posted(data: dict[str, Any], c: dict[str, Any]) -> Command:
    if data.get("request") is None:
        return PostEntry.model_validate(c)
    return PayRequest.model_validate(
        {
            "key": c["key"],
            "request_id": _hold(data, "request"),
            "effective_at": c["effective_at"],
            "description": c["description"],
            "metadata": c["metadata"],
        }
    )


def _request(data: dict[str, Any], c: dict[str, Any]) -> Command:
    legs = c["legs"]
    if len(legs) != 2 or legs[0].amount <= 0 or legs[0].amount != legs[1].amount.copy_negate():
        raise ValueError("a request has two legs: the payer's debit, then the requester's credit")
    return RequestPayment.model_validate(
        {
            "key": c["key"],
            "payer": legs[0].account,
            "requester": legs[1].account,
            "amount": legs[0].amount,
            "asset": legs[0].asset,
            "effective_at": c["effective_at"],
            "description": c["description"],
            "metadata": c["metadata"],
        }
    )


#: Lines that change an account (their fields are the command's own).
_ACCOUNT_CHANGES: dict[str, type[Command]] = {
    "change_limits": ChangeLimits,
    "freeze_account": FreezeAccount,
    "unfreeze_account": UnfreezeAccount,
    "close_account": CloseAccount,
}

_BUILDERS: dict[str, Any] = {
    "posted": _posted,
    "request": _request,
    "decline": lambda data, c: DeclineRequest.model_validate(
        {
            "key": c["key"],
            "request_id": _hold(data, "request"),
            "effective_at": c["effective_at"],
            "description": c["description"],
            "metadata": c["metadata"],
        }
    ),
    "pending": _pending,
    "capture": lambda data, c: PostHold.model_validate(
        {**c, "hold_id": _hold(data), "legs": c["legs"] or None}
    ),
    "void": lambda data, c: VoidHold.model_validate(
        {
            "key": c["key"],
            "hold_id": _hold(data),
            "effective_at": c["effective_at"],
            "description": c["description"],
        }
    ),
    "expire": lambda data, c: ExpireHold.model_validate(
        {
            "key": c["key"],
            "hold_id": _hold(data),
            "now": _when(data.get("effective_at"), "effective_at"),
        }
    ),
    "reversal": lambda data, c: ReverseEntry.model_validate(
        {**c, "entry_id": _hold(data, "reverses"), "legs": c["legs"] or None}
    ),
}


def _validated(
    lines: Iterable[str], assets: _Assets | None = None
) -> Iterator[tuple[int, Command | LineError]]:
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            command = parse_line(text)
            if assets is not None:
                assets.check(command)
            yield number, command
        except (ValueError, LedgerError) as e:
            yield number, LineError(number, str(e))


class _Assets:
    """Checks a line's amounts against its assets' scales and that it balances, so
    that such lines are refused before anything is applied."""

    def __init__(self, books: Ledger) -> None:
        self.books = books
        self.scales: dict[str, int | None] = {}

    def scale(self, code: str) -> int:
        if code not in self.scales:
            try:
                self.scales[code] = self.books.asset(code).scale
            except UnknownAsset:
                self.scales[code] = None
        scale = self.scales[code]
        if scale is None:
            raise UnknownAsset(f"asset {code!r} is not an ISO 4217 currency and was not declared")
        return scale

    def check(self, command: Command) -> None:
        if isinstance(command, DeclareAsset):
            self.scales.setdefault(command.code, command.scale)
            return
        totals: dict[str, int] = {}
        for leg in getattr(command, "legs", None) or ():
            minor = to_minor(leg.amount, Asset(leg.asset, self.scale(leg.asset)))
            totals[leg.asset] = totals.get(leg.asset, 0) + minor
        if any(totals.values()):
            raise UnbalancedEntry("entry does not balance per currency (debits must equal credits)")


def import_lines(
    books: Ledger,
    read: Any,
    *,
    skip_invalid: bool = False,
    open_accounts: bool = True,
    default_normal: Literal["debit", "credit"] = "credit",
    normals: Mapping[str, Literal["debit", "credit"]] | None = None,
    progress: Any = None,
) -> ImportReport:
    """Validate every line first (nothing applied if any is invalid, unless
    ``skip_invalid``); then apply in chunks through the batch path. ``read`` is a
    callable returning a fresh iterator over the lines (the input is read twice and
    never held in memory).

    With ``open_accounts``, an account used before any line opens it is opened with
    the normal side of the longest matching prefix in ``normals`` (``{"Assets":
    "debit", "Expenses": "debit"}``, for charts like beancount's), else
    ``default_normal``."""
    sides = sorted((normals or {}).items(), key=lambda item: -len(item[0]))

    def normal_of(account: str) -> Literal["debit", "credit"]:
        return next((side for prefix, side in sides if account.startswith(prefix)), default_normal)

    report = ImportReport(errors=[])
    refused: set[int] = set()
    for number, item in _validated(read(), _Assets(books)):
        report.lines += 1
        if isinstance(item, LineError):
            report.invalid += 1
            refused.add(number)
            report.errors.append(item)  # type: ignore[union-attr]
    if report.invalid and not skip_invalid:
        return report
    chunk: list[tuple[int, Command]] = []
    known: set[str] = set()
    for number, item in _validated(read()):
        # A line refused by the first pass is skipped here, even if this pass (which
        # does not check assets again) would take it: each line is counted once.
        if isinstance(item, LineError) or number in refused:
            continue
        if isinstance(item, OpenAccount):
            known.add(item.account)
        elif open_accounts:
            chunk.extend((0, opening) for opening in _openings(item, known, normal_of))
        chunk.append((number, item))
        if len(chunk) >= _CHUNK:
            _apply(books, chunk, report, progress)
            chunk = []
    if chunk:
        _apply(books, chunk, report, progress)
    return report


def _openings(
    cmd: Command, known: set[str], normal_of: Callable[[str], Literal["debit", "credit"]]
) -> list[Command]:
    out: list[Command] = []
    named = [(leg.account, leg.asset) for leg in getattr(cmd, "legs", None) or ()]
    if isinstance(cmd, RequestPayment):
        named = [(cmd.payer, cmd.asset), (cmd.requester, cmd.asset)]
    for account, asset in named:
        if account in known:
            continue
        known.add(account)
        out.append(
            OpenAccount(
                key=f"account:{account}", account=account, asset=asset, normal=normal_of(account)
            )
        )
    return out


def _apply(
    books: Ledger, chunk: list[tuple[int, Command]], report: ImportReport, progress: Any
) -> None:
    commands = [cmd for _, cmd in chunk]
    for (number, cmd), outcome in zip(chunk, books.submit_all(commands), strict=True):
        if number == 0:  # an opening the import added
            continue
        if outcome.status == "applied":
            if outcome.replayed:
                report.replayed += 1
            else:
                report.applied += 1
        elif outcome.status == "rejected":
            report.rejected += 1
            report.errors.append(LineError(number, f"{cmd.key}: {outcome.code}: {outcome.message}"))  # type: ignore[union-attr]
        elif outcome.status == "conflict":
            report.conflicts += 1
            report.errors.append(LineError(number, f"{cmd.key}: {outcome.message}"))  # type: ignore[union-attr]
        else:
            report.invalid += 1
            report.errors.append(LineError(number, f"{cmd.key}: {outcome.message}"))  # type: ignore[union-attr]
        if progress is not None:
            progress(1)


def export_lines(books: Ledger) -> Iterator[bytes]:
    """Every asset, account, account change and entry as one JSON line, in log order
    (the import format)."""
    scales: dict[str, int] = {}
    keys: dict[uuid.UUID, str] = {}
    assets: dict[str, Asset] = {}  # of each account
    position = 0
    while True:
        batch = books.store.read_log(position, 10_000)
        if not batch:
            return
        for n in batch:
            e = LogEvent.from_notification(n)
            if e.topic == TOPIC_ASSET_DECLARED:
                scales[e.body["code"]] = e.body["scale"]
                yield (
                    orjson.dumps(
                        {"kind": "asset", "code": e.body["code"], "scale": e.body["scale"]}
                    )
                    + b"\n"
                )
            elif e.topic == TOPIC_ACCOUNT_OPENED:
                scales.setdefault(e.body["asset"], e.body["scale"])
                asset = assets[e.body["account"]] = Asset(e.body["asset"], e.body["scale"])
                yield _account_line(e.body, asset)
            elif e.topic == TOPIC_ACCOUNT_CHANGED and "change" in e.body:
                yield _change_line(e.body, assets[e.body["account"]])
            elif e.topic == TOPIC_ENTRY:
                keys[e.stream_id] = e.body["key"]
                yield _line(e, scales, keys)
        position = batch[-1].id


def _bound(minor: str | None, asset: Asset) -> str | None:
    return None if minor is None else plain(to_decimal(int(minor), asset))


def _account_line(body: dict[str, Any], asset: Asset) -> bytes:
    out: dict[str, Any] = {
        "kind": "account",
        "key": body["key"],
        "account": body["account"],
        "asset": body["asset"],
        "normal": body["normal"],
        "min_balance": _bound(body["min"], asset),
        "max_balance": _bound(body["max"], asset),
        "owner": body["owner"],
        "metadata": body["metadata"],
    }
    return orjson.dumps(out) + b"\n"


def _change_line(body: dict[str, Any], asset: Asset) -> bytes:
    change = body["change"]
    out: dict[str, Any] = {"kind": change["kind"], "key": change["key"], "account": body["account"]}
    if change["kind"] == "change_limits":
        out["min_balance"] = _bound(change["min"], asset)
        out["max_balance"] = _bound(change["max"], asset)
    if change["kind"] == "freeze_account":
        out["mode"] = change["mode"]
    if "reason" in body:
        out["reason"] = body["reason"]
    return orjson.dumps(out) + b"\n"


def _line(e: LogEvent, scales: dict[str, int], keys: dict[uuid.UUID, str]) -> bytes:
    body = e.body

    def amount(asset: str, minor: int) -> str:
        scale = scales.get(asset)
        iso = iso_currency(asset)
        return plain(
            to_decimal(minor, Asset(asset, scale if scale is not None else iso.scale if iso else 0))
        )

    out: dict[str, Any] = {"key": body["key"]}
    if body["kind"] != "posted":
        out["kind"] = body["kind"]
    out["effective_at"] = body["effective_at"]
    out["description"] = body["description"]
    out["legs"] = [
        {"account": a, "amount": amount(asset, int(m)), "currency": asset}
        for a, asset, m in body.get("terms") or body["legs"]
    ]
    if body.get("hold"):
        out["hold"] = keys.get(uuid.UUID(body["hold"]), body["hold"])
    if body.get("reverses"):
        out["reverses"] = keys.get(uuid.UUID(body["reverses"]), body["reverses"])
    if body.get("request"):
        out["request"] = keys.get(uuid.UUID(body["request"]), body["request"])
    if body.get("expires_at"):
        out["expires_at"] = body["expires_at"]
    out["metadata"] = body["metadata"]
    return orjson.dumps(out) + b"\n"

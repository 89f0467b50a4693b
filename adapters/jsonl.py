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

import hashlib
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any, Literal

import orjson

from ledger.adapters.jsonl_lines import parse_line, payment_legs
from ledger.assets import Asset, iso_currency, plain, to_decimal, to_minor
from ledger.commands.executor import fingerprint
from ledger.commands.models import (
    ACCOUNT_COMMANDS,
    Command,
    DeclareAsset,
    LegInput,
    OpenAccount,
    PayRequest,
    RequestPayment,
)
from ledger.commands.service import Ledger
from ledger.entries import minor_legs
from ledger.errors import (
    AssetMismatch,
    DecryptionError,
    IdempotencyConflict,
    LedgerError,
    StoreError,
    UnknownAccount,
    UnknownAsset,
)
from ledger.events import (
    TOPIC_ACCOUNT_CHANGED,
    TOPIC_ACCOUNT_OPENED,
    TOPIC_ASSET_DECLARED,
    TOPIC_ENTRY,
    LogEvent,
    decode,
)
from ledger.model import Leg, account_stream_id, entry_id_for_key
from ledger.sealing import sealing

__all__ = [
    "LINE_BYTES_MAX",
    "ImportReport",
    "LineError",
    "export_lines",
    "import_lines",
    "lines_of",
    "parse_line",
]

_CHUNK = 2000

#: Longest line an import reads, in bytes (in characters for lines given as ``str``).
#: A valid line is far shorter (metadata of at most 8 KiB, 64 legs, a description of
#: 1,024 characters, even with every character escaped); a longer one is a line error,
#: and :func:`lines_of` never holds more of it than this.
LINE_BYTES_MAX = 1 << 20


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


def lines_of(stream: IO[bytes], line_bytes_max: int = LINE_BYTES_MAX) -> Iterator[bytes]:
    """The lines of a binary ``stream``, each ended by ``\\n`` (as JSON Lines ends them;
    a ``\\r`` before it is JSON whitespace, a lone ``\\r`` ends no line). Of a line
    longer than ``line_bytes_max`` only its first ``line_bytes_max + 1`` bytes are
    given (enough for :func:`import_lines` to refuse it); the rest is read and dropped,
    so a hostile file's line is never held whole."""
    while line := stream.readline(line_bytes_max + 1):
        if len(line) > line_bytes_max and not line.endswith(b"\n"):
            while (rest := stream.readline(1 << 16)) and not rest.endswith(b"\n"):
                pass
        yield line


def _text(number: int, raw: str | bytes) -> str | LineError:
    """A line as text, or why it is refused (too long); bytes that are not UTF-8 raise
    ``UnicodeDecodeError`` naming the line: the input is not a text file."""
    if len(raw) > LINE_BYTES_MAX:
        unit = "bytes" if isinstance(raw, bytes) else "characters"
        return LineError(number, f"line is longer than {LINE_BYTES_MAX} {unit}")
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError as e:
        reason = f"line {number}: {e.reason} (byte {e.start + 1})"
        raise UnicodeDecodeError(e.encoding, e.object, e.start, e.end, reason) from None


def _validated(
    lines: Iterable[str | bytes], checks: _Checks | None = None
) -> Iterator[tuple[int, Command | LineError]]:
    """Each non-blank line as its command or as why it is refused, in order. With
    ``checks``, lines are checked in blocks (the accounts a block names are looked up
    in the store with one read). Lines given as bytes are decoded as UTF-8."""
    block: list[tuple[int, Command | LineError]] = []
    for number, raw in enumerate(lines, start=1):
        text = _text(number, raw)
        if isinstance(text, LineError):
            block.append((number, text))
        else:
            # A byte order mark, as some editors write UTF-8, is not part of the first line.
            if number == 1 and text.startswith("\ufeff"):
                text = text[1:]
            if not text.strip():
                continue
            try:
                command = parse_line(text)
                if checks is not None and isinstance(command, PayRequest):
                    checks.paid[number] = payment_legs(text)
                block.append((number, command))
            except (ValueError, LedgerError) as e:
                block.append((number, LineError(number, str(e))))
        if len(block) >= _CHUNK:
            yield from _checked(block, checks)
            block = []
    yield from _checked(block, checks)


def _checked(
    block: list[tuple[int, Command | LineError]], checks: _Checks | None
) -> Iterator[tuple[int, Command | LineError]]:
    if checks is None:
        yield from block
        return
    checks.look_up(cmd for _, cmd in block if not isinstance(cmd, LineError))
    for number, item in block:
        if isinstance(item, LineError):
            yield number, item
            continue
        try:
            checks.check(number, item)
        except (UnknownAccount, AssetMismatch) as e:  # as the ledger would name them
            yield number, LineError(number, f"{e.code}: {e}")
        except (ValueError, LedgerError) as e:
            yield number, LineError(number, str(e))
        else:
            yield number, item


class _Keys:
    """Refuses a line whose key an earlier line of the file used for another request
    (a digest of each key and of its request is kept, never the lines): it would be
    applied or refused depending on which line came first."""

    def __init__(self) -> None:
        self.seen: dict[bytes, tuple[int, bytes]] = {}

    def check(self, number: int, command: Command) -> None:
        key = hashlib.blake2b(command.key.encode(), digest_size=16).digest()
        request = bytes.fromhex(fingerprint(command))[:16]
        first = self.seen.setdefault(key, (number, request))
        if first[1] != request:
            raise IdempotencyConflict(
                f"key {command.key!r} was used by line {first[0]} for another request"
            )


def _named(cmd: Command) -> list[tuple[str, str | None]]:
    """The accounts a line uses, each with the asset it moves there (``None`` for a
    lifecycle line, which moves none). Lines that name entries instead (void, expire,
    pay, decline, and a capture or reversal without legs) use accounts that exist."""
    if isinstance(cmd, RequestPayment):
        return [(cmd.payer, cmd.asset), (cmd.requester, cmd.asset)]
    if isinstance(cmd, ACCOUNT_COMMANDS):
        return [(cmd.account, None)]
    return [(leg.account, leg.asset) for leg in getattr(cmd, "legs", None) or ()]


class _Checks:
    """The first pass: what the file and the store already determine about a line,
    so that such lines are refused before anything is applied. Amounts against their
    assets' scales and each entry's balance per asset (the core's own checks); a key an
    earlier line used for another request; and each account in one asset only (its
    asset in the store, or the one an earlier line opened it in or used it with) and,
    without ``open_accounts``, existing in the store or opened by an earlier line."""

    def __init__(self, books: Ledger, *, open_accounts: bool) -> None:
        self.books = books
        self.open_accounts = open_accounts
        self.keys = _Keys()
        self.scales: dict[str, int | None] = {}
        #: Each account's asset and where it comes from (0: the store, else a line).
        self.accounts: dict[str, tuple[str, int]] = {}
        self.looked_up: set[str] = set()
        #: Accounts that exist in the store (when the file was checked).
        self.stored: set[str] = set()
        #: The legs payment lines give, by line number (see :meth:`check_payment`).
        self.paid: dict[int, tuple[LegInput, ...]] = {}
        #: The terms of the requests earlier lines make, by request id.
        self.requests: dict[uuid.UUID, tuple[Leg, ...]] = {}

    def asset(self, code: str) -> Asset:
        if code not in self.scales:
            try:
                self.scales[code] = self.books.asset(code).scale
            except UnknownAsset:
                self.scales[code] = None
        scale = self.scales[code]
        if scale is None:
            raise UnknownAsset(f"asset {code!r} is not an ISO 4217 currency and was not declared")
        return Asset(code, scale)

    def look_up(self, commands: Iterable[Command]) -> None:
        """Read the accounts these lines name that were not read yet (one read)."""
        names: dict[uuid.UUID, str] = {}
        for cmd in commands:
            named = [cmd.account] if isinstance(cmd, OpenAccount) else [a for a, _ in _named(cmd)]
            for name in named:
                if name not in self.looked_up:
                    self.looked_up.add(name)
                    names[account_stream_id(name)] = name
        ids = list(names)
        for start in range(0, len(ids), 1000):
            found = self.books.store.load_streams(ids[start : start + 1000])
            for sid, (first, _) in found.items():
                name = names[sid]
                self.stored.add(name)
                self.accounts.setdefault(name, (decode(first.state, unseal=False)["asset"], 0))

    def check(self, number: int, command: Command) -> None:
        """Refuse the line (raise) or take it: what it opens is known from now on."""
        if isinstance(command, DeclareAsset):
            self.keys.check(number, command)
            self.scales.setdefault(command.code, command.scale)
            return
        legs = getattr(command, "legs", None) or ()
        minor_legs(((leg.account, leg.amount, leg.asset) for leg in legs), self.asset)
        if isinstance(command, OpenAccount):
            named: list[tuple[str, str | None]] = [(command.account, command.asset)]
        else:
            named = _named(command)
        seen: dict[str, tuple[str, int]] = {}
        for account, asset in named:
            known = seen.get(account) or self.accounts.get(account)
            if known is None:
                if asset is None or not (self.open_accounts or isinstance(command, OpenAccount)):
                    raise UnknownAccount(
                        f"account {account!r} does not exist: it is not in the store and no "
                        "earlier line opens it"
                        + ("" if asset is None else " (the import opens no accounts)")
                    )
                seen[account] = (asset, number)
            elif asset is not None and known[0] != asset:
                where = "in the store" if known[1] == 0 else f"since line {known[1]}"
                if known[1] == number:
                    where = "in another leg of this line"
                raise AssetMismatch(
                    f"account {account!r} holds {known[0]} ({where}); this line uses it in {asset}"
                )
        if isinstance(command, PayRequest):
            self.check_payment(number, command)
        self.keys.check(number, command)
        for account, known in seen.items():
            self.accounts.setdefault(account, known)
        if isinstance(command, RequestPayment):
            minor = to_minor(command.amount, self.asset(command.asset))
            self.requests[entry_id_for_key(command.key)] = (
                Leg(command.payer, command.asset, minor),
                Leg(command.requester, command.asset, -minor),
            )

    def check_payment(self, number: int, command: PayRequest) -> None:
        """Refuse a payment line whose legs are not the terms of the request it pays
        (an earlier line's, or the store's): the payment moves the request's terms, so
        the line would say another amount than what is applied."""
        given = self.paid.pop(number, ())
        if not given:
            return  # a line without legs pays the terms, whatever they are
        legs = minor_legs(((leg.account, leg.amount, leg.asset) for leg in given), self.asset)
        terms = self.requests.get(command.request_id)
        if terms is None:
            request = self.books.entry(command.request_id)
            if request is None or request.kind != "request":
                return  # the core refuses it (no such request), under its key
            terms = request.legs
        if sorted(legs) != sorted(terms):
            raise ValueError(
                "legs: a payment's legs are the terms of the request it pays "
                f"({_terms(terms, self.asset)}), not these"
            )


def _terms(terms: Iterable[Leg], asset: Callable[[str], Asset]) -> str:
    return ", ".join(
        f"{leg.account} {plain(to_decimal(leg.amount, asset(leg.asset)))} {leg.asset}"
        for leg in terms
    )


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
    callable returning a fresh iterator over the lines, as ``str`` or as UTF-8 bytes
    (:func:`lines_of` reads them from a binary file; the input is read twice and never
    held in memory). Bytes that are not UTF-8 raise ``UnicodeDecodeError`` naming the
    line, before anything is applied.

    A line is invalid when it cannot be read or is longer than
    :data:`LINE_BYTES_MAX`, when its amounts do not fit its assets
    or it does not balance, when an earlier line used its key for another request, when
    it uses an account in another asset than the account's (in the store, or as an
    earlier line opened or used it), and, without ``open_accounts``, when it names an
    account that neither exists nor is opened by an earlier line.

    With ``open_accounts``, an account used before any line opens it is opened with
    the normal side of the longest matching prefix in ``normals`` (``{"Assets":
    "debit", "Expenses": "debit"}``, for charts like beancount's), else
    ``default_normal`` (keyed ``account:<id>``, just before the first line that uses
    it; an account opened meanwhile by another writer is used as it is)."""
    sides = sorted((normals or {}).items(), key=lambda item: -len(item[0]))

    def normal_of(account: str) -> Literal["debit", "credit"]:
        return next((side for prefix, side in sides if account.startswith(prefix)), default_normal)

    report = ImportReport(errors=[])
    refused: set[int] = set()
    checks = _Checks(books, open_accounts=open_accounts)
    for number, item in _validated(read(), checks):
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
        # does not check again) would take it: each line is counted once.
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
        elif outcome.status == "conflict" and _exported_as(books, cmd):
            report.replayed += 1  # the entry this line was exported from
        elif outcome.status == "conflict":
            report.conflicts += 1
            report.errors.append(LineError(number, f"{cmd.key}: {outcome.message}"))  # type: ignore[union-attr]
        else:
            report.invalid += 1
            report.errors.append(LineError(number, f"{cmd.key}: {outcome.message}"))  # type: ignore[union-attr]
        if progress is not None:
            progress(1)


def _exported_as(books: Ledger, cmd: Command) -> bool:
    """Whether ``cmd`` is the line :func:`export_lines` writes for the entry recorded
    under its key. The export writes an entry as resolved (its recorded time where the
    request gave none, a capture's or reversal's legs), which the core fingerprints as
    another request than the one the library was given; so a key conflict on such a
    line is the entry itself coming back (an export imported into the store it came
    from, e.g. after restoring a backup), not another request. Read only for
    conflicting lines.

    An entry that cannot be written back as a line (sealed with a key this ledger's
    keyring lacks, or edited outside the ledger) is not shown to be the line: the line
    stays a conflict, and the import goes on."""
    entry_id = entry_id_for_key(cmd.key)
    head = books.store.load_streams([entry_id]).get(entry_id)
    if head is None or head[0].topic != TOPIC_ENTRY:
        return False
    first = head[0]
    try:
        with sealing(books.keyring):
            body = decode(first.state)
        refs = [uuid.UUID(body[name]) for name in ("hold", "reverses", "request") if body.get(name)]
        keys = {
            ref: decode(heads[0].state, unseal=False)["key"]
            for ref, heads in books.store.load_streams(refs).items()
        }
        legs = body.get("terms") or body["legs"]
        scales = {asset: books.asset(asset).scale for _, asset, _ in legs}
        event = LogEvent(0, entry_id, first.originator_version, first.topic, body)
        exported = parse_line(_line(event, scales, keys))
    except DecryptionError:
        return False  # a StoreError, yet no fault of the store: the line is not shown equal
    except StoreError:
        raise  # the store failed: the import stops, as it would on a write
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, LedgerError):
        return False  # an entry edited into what no export writes (the audit names it)
    return type(exported) is type(cmd) and fingerprint(exported) == fingerprint(cmd)


def export_lines(books: Ledger) -> Iterator[bytes]:
    """Every asset, account, account change and entry as one JSON line, in log order
    (the import format); sealed personal fields are opened with the ledger's keyring."""
    scales: dict[str, int] = {}
    keys: dict[uuid.UUID, str] = {}
    assets: dict[str, Asset] = {}  # of each account
    position = 0
    while True:
        batch = books.store.read_log(position, 10_000)
        if not batch:
            return
        with sealing(books.keyring):  # not across the yields: only while decoding
            decoded = [LogEvent.from_notification(n) for n in batch]
        for e in decoded:
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

"""The first pass of a JSON Lines import: lines read with a bound on their length
(:func:`lines_of`), parsed, and checked against the earlier lines of the file and
against the store (:class:`_Checks`), so that an invalid line is refused before
anything is applied; each refusal is a :class:`LineError`."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO

from ledger.adapters.jsonl_lines import parse_line, payment_legs
from ledger.assets import Asset, plain, to_decimal, to_minor
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
    IdempotencyConflict,
    LedgerError,
    UnknownAccount,
    UnknownAsset,
)
from ledger.events import decode
from ledger.model import Leg, account_stream_id, entry_id_for_key

__all__ = ["LINE_BYTES_MAX", "LineError", "lines_of"]

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
            line = _Overlong(line)
            line.limit = line_bytes_max
        yield line


class _Overlong(bytes):
    """The start of a line longer than the limit :func:`lines_of` was given: refused
    as such, whatever that limit (a cut line may still parse)."""

    limit = LINE_BYTES_MAX


def _text(number: int, raw: str | bytes) -> str | LineError:
    """A line as text, or why it is refused (too long); bytes that are not UTF-8 raise
    ``UnicodeDecodeError`` naming the line: the input is not a text file."""
    if type(raw) is _Overlong:
        return LineError(number, f"line is longer than {raw.limit} bytes")
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

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

The import is here; the first pass that reads and checks the lines is in
``jsonl_checks``, the export in ``jsonl_export`` and the line model in ``jsonl_lines``
(the public names of all three importable from here).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ledger.adapters.jsonl_checks import (
    _CHUNK,
    LINE_BYTES_MAX,
    LineError,
    _Checks,
    _validated,
    lines_of,
)
from ledger.adapters.jsonl_export import _line, export_lines
from ledger.adapters.jsonl_lines import parse_line
from ledger.commands.executor import fingerprint
from ledger.commands.models import Command, OpenAccount, RequestPayment
from ledger.commands.service import Ledger
from ledger.errors import DecryptionError, LedgerError, StoreError
from ledger.events import TOPIC_ENTRY, LogEvent, decode
from ledger.model import entry_id_for_key
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

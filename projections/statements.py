"""Account statements from the balances view's history lines (by effective time).

A statement for ``[start, end)`` has the opening balance (posted, before ``start``),
every posted line in the period with its running balance, and the closing balance;
the closing balance of one period is the opening of the next by construction.

Backdating: an entry recorded after a statement was issued but effective inside its
period changes the period. ``statement(..., known_at=issued_at)`` gives the statement
exactly as issued (only entries recorded by then); ``statement(...,
restated_since=issued_at)`` gives the current one with those late lines flagged as
restatements.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from ledger.assets import Asset, to_decimal
from ledger.errors import InvalidCommand
from ledger.sealing import open_text

from .balances import name_arg, utc_text
from .views import ViewWriter

__all__ = ["Statement", "StatementLine", "statement"]


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One posted change of the account within the period."""

    position: int
    entry_id: str
    kind: str
    description: str
    effective_at: str
    recorded_at: str
    amount: Decimal
    running: Decimal
    restated: bool


@dataclass(frozen=True, slots=True)
class Statement:
    """Opening balance, lines, closing balance of one account for one period."""

    account: str
    asset: str
    start: datetime
    end: datetime
    opening: Decimal
    lines: tuple[StatementLine, ...]
    closing: Decimal


def statement(
    w: ViewWriter,
    account: str,
    start: datetime,
    end: datetime,
    *,
    known_at: datetime | None = None,
    restated_since: datetime | None = None,
) -> Statement | None:
    """The statement of ``account`` for ``[start, end)``; None if no such account.
    A start after the end is InvalidCommand (an empty statement would look like one
    with no activity)."""
    if utc_text(start) > utc_text(end):
        raise InvalidCommand(
            f"the statement starts ({start.isoformat()}) after it ends ({end.isoformat()})"
        )
    meta = w.query("SELECT asset, scale FROM rm_balances WHERE account = ?", (name_arg(account),))
    if not meta:
        return None
    asset = Asset(meta[0][0], meta[0][1])
    sql = (
        "SELECT position, entry_id, kind, description, effective_at, recorded_at, d_posted"
        " FROM rm_balance_lines WHERE account = ? AND effective_at < ?"
    )
    params: list[Any] = [account, utc_text(end)]
    if known_at is not None:
        sql += " AND recorded_at <= ?"
        params.append(utc_text(known_at))
    rows = sorted(w.query(sql, params), key=lambda r: (r[4], r[0]))
    first = utc_text(start)
    since = None if restated_since is None else utc_text(restated_since)
    opening = sum((int(r[6]) for r in rows if r[4] < first), 0)
    running = opening
    lines = []
    for position, entry, kind, text, effective, recorded, posted in rows:
        amount = int(posted)
        if effective < first or amount == 0:
            continue
        running += amount
        lines.append(
            StatementLine(
                position,
                entry,
                kind,
                open_text(text),
                effective,
                recorded,
                to_decimal(amount, asset),
                to_decimal(running, asset),
                since is not None and recorded > since,
            )
        )
    return Statement(
        account,
        asset.code,
        start,
        end,
        to_decimal(opening, asset),
        tuple(lines),
        to_decimal(running, asset),
    )

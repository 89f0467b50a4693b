"""Balances read model: current balances, and balances as of any past instant.

Tables (``{s}`` is empty, or a suffix while rebuilding):

* ``rm_balances{s}`` - one row per account: asset, normal side, owner, posted,
  pending_out, pending_in, and the log position of its last change.
* ``rm_balance_lines{s}`` - one row per (account, entry): the change of the three
  balances with the entry's effective and recorded time, for as-of queries by either
  time or both ("on 31 Dec, as we knew it on 5 Jan").

Balances are normal-oriented, as on the write side.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from ledger.assets import EXACT, Asset, to_decimal
from ledger.effects import entry_effects
from ledger.errors import InvalidCommand
from ledger.events import TOPIC_ACCOUNT_OPENED, TOPIC_ENTRY, LogEvent
from ledger.sealing import seal_text

from .views import ViewWriter

__all__ = ["BalanceRow", "BalancesView", "name_arg"]

_CHUNK = 500
_BALANCE_COLUMNS = (
    ("account", "text"),
    ("asset", "text"),
    ("scale", "int"),
    ("sign", "int"),
    ("owner", "text"),
    ("posted", "amount"),
    ("pending_out", "amount"),
    ("pending_in", "amount"),
    ("position", "int"),
    ("opened_at", "text"),
)
_LINE_COLUMNS = (
    ("account", "text"),
    ("position", "int"),
    ("effective_at", "text"),
    ("recorded_at", "text"),
    ("d_posted", "amount"),
    ("d_pending_out", "amount"),
    ("d_pending_in", "amount"),
    ("entry_id", "text"),
    ("kind", "text"),
    ("description", "text"),
)


def utc_text(value: datetime) -> str:
    """A timestamp as fixed-width UTC text, so text order is time order. A time without
    a zone is refused (``InvalidCommand``), as on the write side: read as the machine's
    local time it would give another answer on every server."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidCommand(f"{value!r} needs a time zone (e.g. datetime(..., tzinfo=UTC))")
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise InvalidCommand(
            f"{value.isoformat()} is out of range in UTC (years 1 to 9999)"
        ) from None
    # %Y does not pad years before 1000 (glibc): the year is padded here.
    return f"{utc.year:04d}" + utc.strftime("-%m-%dT%H:%M:%S.%f+00:00")


def name_arg(value: object, what: str = "account") -> str:
    """``value`` if it can be a name the ledger holds (an account, an owner, a viewer);
    else InvalidCommand: not a string, or one no database can store (a NUL character,
    a lone surrogate), which would otherwise be a driver error on one backend and a
    silent answer on the other."""
    if not isinstance(value, str):
        raise InvalidCommand(f"{what} is a str, not {type(value).__name__}")
    if "\x00" in value or not _encodable(value):
        raise InvalidCommand(f"{what} {value!r} has a NUL character or is not valid UTF-8")
    return value


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class BalanceRow:
    """An account's balances in the read model (exact decimals)."""

    account: str
    asset: str
    owner: str | None
    posted: Decimal
    pending_out: Decimal
    pending_in: Decimal
    #: The account's normal side: balances above are oriented to it.
    normal: Literal["debit", "credit"] = "credit"

    @property
    def available(self) -> Decimal:
        """Posted minus what open holds reserve (exact, whatever the host's decimal
        context)."""
        return EXACT.subtract(self.posted, self.pending_out)

    @property
    def signed(self) -> Decimal:
        """The posted balance as debits minus credits (the import format's sign:
        positive is a debit balance), whatever the account's normal side."""
        if self.normal == "debit" or not self.posted:
            return self.posted
        return self.posted.copy_negate()


@dataclass(slots=True)
class _Account:
    asset: str
    scale: int
    sign: int
    owner: str | None
    posted: int = 0
    pending_out: int = 0
    pending_in: int = 0
    position: int = 0
    lines: list[tuple[Any, ...]] = field(default_factory=list)
    new: bool = False
    #: When it was opened (UTC text); None for an account already in the table (the
    #: upsert keeps its value) and in tables made before the column existed.
    opened_at: str | None = None


class BalancesView:
    """The balances projection (see the module docstring for its tables)."""

    name = "balances"

    def __init__(self) -> None:
        self._pending: dict[str, _Account] = {}
        self._raw: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        self._opened: dict[str, _Account] = {}

    # -- schema -----------------------------------------------------------------------

    def tables(self) -> tuple[str, ...]:
        """The tables this view owns (without suffix)."""
        return ("rm_balances", "rm_balance_lines")

    def create(self, w: ViewWriter, suffix: str = "") -> None:
        """Create the view's tables if missing."""
        w.execute(
            w.ddl(
                f"CREATE TABLE IF NOT EXISTS rm_balances{suffix} ("
                " account TEXT PRIMARY KEY, asset TEXT NOT NULL, scale INTEGER NOT NULL,"
                " sign INTEGER NOT NULL, owner TEXT, posted {amount} NOT NULL,"
                " pending_out {amount} NOT NULL, pending_in {amount} NOT NULL,"
                " position BIGINT NOT NULL, opened_at TEXT)"
            )
        )
        if not _has_column(w, f"rm_balances{suffix}", "opened_at"):  # made before it
            w.execute(f"ALTER TABLE rm_balances{suffix} ADD COLUMN opened_at TEXT")
        w.execute(
            w.ddl(
                f"CREATE TABLE IF NOT EXISTS rm_balance_lines{suffix} ("
                " account TEXT NOT NULL, position BIGINT NOT NULL, effective_at TEXT NOT NULL,"
                " recorded_at TEXT NOT NULL, d_posted {amount} NOT NULL,"
                " d_pending_out {amount} NOT NULL, d_pending_in {amount} NOT NULL,"
                " entry_id TEXT NOT NULL, kind TEXT NOT NULL, description TEXT NOT NULL,"
                " PRIMARY KEY (account, position))"
            )
        )
        if not suffix:  # indexes of a rebuild are made after the swap, under final names
            w.execute("CREATE INDEX IF NOT EXISTS rm_balances_owner ON rm_balances (owner)")

    # -- projecting -----------------------------------------------------------------------

    def apply(self, event: LogEvent) -> None:
        """Take one event into the pending batch (nothing is written until flush)."""
        if event.topic == TOPIC_ACCOUNT_OPENED:
            body = event.body
            self._opened[body["account"]] = _Account(
                body["asset"],
                body["scale"],
                1 if body["normal"] == "debit" else -1,
                body["owner"],
                position=event.position,
                new=True,
                opened_at=_ts(body["at"]),
            )
        elif event.topic == TOPIC_ENTRY:
            body = event.body
            kind = body["kind"]
            effective, recorded = body["effective_at"], body["recorded_at"]
            per_account: dict[str, list[int]] = {}
            for leg, pending, sign in entry_effects(kind, event.legs(), event.legs("releases")):
                raw = per_account.setdefault(leg.account, [0, 0, 0])
                if not pending:
                    raw[0] += leg.amount * sign
                elif leg.amount > 0:
                    raw[1] += leg.amount * sign  # pending debit
                else:
                    raw[2] += -leg.amount * sign  # pending credit
            entry, text = str(event.stream_id), seal_text(body["description"])
            for account, (posted, debit, credit) in per_account.items():
                self._raw[account].append(
                    (event.position, effective, recorded, posted, debit, credit, entry, kind, text)
                )

    def flush(self, w: ViewWriter, suffix: str = "") -> None:
        """Write the pending batch: upsert balances, insert history lines."""
        if not self._raw and not self._opened:
            return
        accounts = dict(self._opened)
        missing = [a for a in self._raw if a not in accounts]
        accounts.update(self._load(w, missing, suffix))
        lines: list[tuple[Any, ...]] = []
        for name, changes in self._raw.items():
            acct = accounts[name]
            for position, effective, recorded, posted, debit, credit, entry, kind, text in changes:
                d_posted = acct.sign * posted
                d_out, d_in = (credit, debit) if acct.sign > 0 else (debit, credit)
                acct.posted += d_posted
                acct.pending_out += d_out
                acct.pending_in += d_in
                acct.position = position
                lines.append(
                    (
                        name,
                        position,
                        _ts(effective),
                        _ts(recorded),
                        w.amount(d_posted),
                        w.amount(d_out),
                        w.amount(d_in),
                        entry,
                        kind,
                        text,
                    )
                )
        w.bulk_insert(
            f"rm_balances{suffix}",
            _BALANCE_COLUMNS,
            [
                (
                    name,
                    a.asset,
                    a.scale,
                    a.sign,
                    a.owner,
                    w.amount(a.posted),
                    w.amount(a.pending_out),
                    w.amount(a.pending_in),
                    a.position,
                    a.opened_at,
                )
                for name, a in accounts.items()
            ],
            "ON CONFLICT (account) DO UPDATE SET posted = excluded.posted,"
            " pending_out = excluded.pending_out, pending_in = excluded.pending_in,"
            " position = excluded.position",
        )
        w.bulk_insert(f"rm_balance_lines{suffix}", _LINE_COLUMNS, lines)
        self.discard()

    def discard(self) -> None:
        """Forget the pending batch (after a flush, or when its transaction failed)."""
        self._raw.clear()
        self._opened.clear()

    def _load(self, w: ViewWriter, names: Sequence[str], suffix: str) -> dict[str, _Account]:
        found: dict[str, _Account] = {}
        for start in range(0, len(names), _CHUNK):
            chunk = names[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = w.query(
                "SELECT account, asset, scale, sign, owner, posted, pending_out, pending_in,"
                f" position FROM rm_balances{suffix} WHERE account IN ({marks})",
                chunk,
            )
            for name, asset, scale, sign, owner, posted, out, inn, position in rows:
                found[name] = _Account(
                    asset, scale, sign, owner, int(posted), int(out), int(inn), position
                )
        return found

    # -- queries -------------------------------------------------------------------------

    @staticmethod
    def balance(w: ViewWriter, account: str) -> BalanceRow | None:
        """The account's current balances in the read model, or None (InvalidCommand
        if ``account`` cannot be a name, see :func:`name_arg`)."""
        name_arg(account)
        rows = w.query(
            "SELECT asset, scale, owner, posted, pending_out, pending_in, sign FROM rm_balances"
            " WHERE account = ?",
            (account,),
        )
        if not rows:
            return None
        asset, scale, owner, posted, out, inn, sign = rows[0]
        a = Asset(asset, scale)
        return BalanceRow(
            account,
            asset,
            owner,
            to_decimal(int(posted), a),
            to_decimal(int(out), a),
            to_decimal(int(inn), a),
            "debit" if int(sign) > 0 else "credit",
        )

    @staticmethod
    def balance_as_of(
        w: ViewWriter,
        account: str,
        at: datetime,
        *,
        by: Literal["effective", "recorded"] = "effective",
        known_at: datetime | None = None,
    ) -> BalanceRow | None:
        """Balances as of ``at`` by effective or recorded time; with ``known_at``, only
        entries recorded by then count (bi-temporal). None if there is no such account,
        or if it was opened after ``at`` and nothing counted by then (an account opened
        later but given entries backdated to before ``at`` has a balance by effective
        time; accounts from before the view recorded opening times always count)."""
        if by not in ("effective", "recorded"):
            raise InvalidCommand(f"by is 'effective' or 'recorded', not {by!r}")
        name_arg(account)
        until = utc_text(at)
        meta = w.query(
            "SELECT asset, scale, owner, sign, opened_at FROM rm_balances WHERE account = ?",
            (account,),
        )
        if not meta:
            return None
        asset, scale, owner, sign, opened_at = meta[0]
        column = "effective_at" if by == "effective" else "recorded_at"
        sql = (
            "SELECT d_posted, d_pending_out, d_pending_in FROM rm_balance_lines"
            f" WHERE account = ? AND {column} <= ?"
        )
        params: list[Any] = [account, until]
        if known_at is not None:
            sql += " AND recorded_at <= ?"
            params.append(utc_text(known_at))
        totals = [0, 0, 0]
        rows = w.query(sql, params)
        if not rows and opened_at is not None and opened_at > until:
            return None  # not open yet at ``at``
        for row in rows:
            for i in range(3):
                totals[i] += int(row[i])
        a = Asset(asset, scale)
        normal: Literal["debit", "credit"] = "debit" if int(sign) > 0 else "credit"
        posted, out, inn = (to_decimal(t, a) for t in totals)
        return BalanceRow(account, asset, owner, posted, out, inn, normal)

    @staticmethod
    def totals(w: ViewWriter, owner: str | None = None) -> dict[str, dict[str, Decimal]]:
        """Per asset: the sum of posted balances of debit-normal and of credit-normal
        accounts (equal when the books balance), optionally for one owner."""
        sql = "SELECT asset, scale, sign, posted FROM rm_balances"
        params: tuple[Any, ...] = ()
        if owner is not None:
            sql += " WHERE owner = ?"
            params = (name_arg(owner, "owner"),)
        sums: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
        for asset, scale, sign, posted in w.query(sql, params):
            sums[(asset, scale)][0 if sign > 0 else 1] += int(posted)
        return {
            asset: {
                "debit_normal": to_decimal(d, Asset(asset, scale)),
                "credit_normal": to_decimal(c, Asset(asset, scale)),
            }
            for (asset, scale), (d, c) in sums.items()
        }


def _ts(text: str) -> str:
    # The write side stamps UTC with microseconds: already in the fixed-width form.
    if len(text) == 32 and text.endswith("+00:00"):
        return text
    return utc_text(datetime.fromisoformat(text))


def _has_column(w: ViewWriter, table: str, column: str) -> bool:
    """Whether ``table`` (in the view's schema) has ``column``."""
    if w.dialect == "postgresql":
        return bool(
            w.query(
                "SELECT 1 FROM information_schema.columns WHERE table_schema ="
                " current_schema() AND table_name = ? AND column_name = ?",
                (table, column),
            )
        )
    return any(row[1] == column for row in w.query(f"PRAGMA table_info({table})"))

"""Activity feed read model: the social feed of a P2P app.

An entry that posts money between accounts with owners becomes one feed item: the
payer (owner whose balance went down), the payee (owner whose balance went up), the
amount, the note (metadata ``note``, else the description) and the visibility
(metadata ``visibility``: ``public``, ``friends`` or ``private``; default private).
Every owner touched is a member of the item.

Who sees what (``feed``): a viewer sees items they are a member of, public items, and
friends-only items of which a member is the viewer's friend; never another user's
private items. Pages are newest first with a cursor (the last position shown), so a
page is stable while new items arrive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from ledger.assets import Asset, to_decimal
from ledger.errors import InvalidCommand
from ledger.events import TOPIC_ACCOUNT_OPENED, TOPIC_ENTRY, LogEvent
from ledger.sealing import open_text, seal_text

from .balances import name_arg, utc_text
from .views import ViewWriter

__all__ = ["FeedItem", "FeedPage", "FeedView"]

VISIBILITIES = ("public", "friends", "private")
#: The most items a feed page holds (a larger ``limit`` gets this many).
PAGE_LIMIT_MAX = 200
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One payment as shown in a feed."""

    position: int
    entry_id: str
    payer: str | None
    payee: str | None
    asset: str
    amount: Decimal
    note: str
    visibility: str
    at: str


@dataclass(frozen=True, slots=True)
class FeedPage:
    """A page of a feed and the cursor of the next one (None at the end)."""

    items: tuple[FeedItem, ...]
    next_cursor: str | None


_ACCOUNT_COLUMNS = (
    ("account", "text"),
    ("owner", "text"),
    ("sign", "int"),
    ("asset", "text"),
    ("scale", "int"),
)
_ITEM_COLUMNS = (
    ("position", "int"),
    ("entry_id", "text"),
    ("payer", "text"),
    ("payee", "text"),
    ("asset", "text"),
    ("scale", "int"),
    ("amount", "amount"),
    ("note", "text"),
    ("visibility", "text"),
    ("at", "text"),
)
_MEMBER_COLUMNS = (("owner", "text"), ("position", "int"))
_NOTE_COLUMNS = (("entry_id", "text"), ("note", "text"), ("visibility", "text"))
#: The entries that show in the feed, and those whose note and visibility the entry
#: that settles them shows (a standard payment's hold, a money request).
_SHOWN = ("posted", "capture", "reversal")
_SETTLED_LATER = ("pending", "request")


class FeedView:
    """The activity feed projection."""

    name = "feed"

    def __init__(self) -> None:
        self._accounts: dict[str, tuple[Any, ...]] = {}
        self._entries: list[LogEvent] = []
        #: Holds and requests of this batch that carry a note or a visibility: the
        #: (sealed note, visibility) their capture or payment shows, by entry id.
        self._notes: dict[str, tuple[str, str]] = {}

    def tables(self) -> tuple[str, ...]:
        """The tables this view owns (friendships are input, kept across rebuilds)."""
        return ("rm_feed_accounts", "rm_feed_items", "rm_feed_members", "rm_feed_notes")

    def create(self, w: ViewWriter, suffix: str = "") -> None:
        """Create the tables if missing."""
        w.execute(
            f"CREATE TABLE IF NOT EXISTS rm_feed_accounts{suffix} (account TEXT PRIMARY KEY,"
            " owner TEXT, sign INTEGER NOT NULL, asset TEXT NOT NULL, scale INTEGER NOT NULL)"
        )
        w.execute(
            w.ddl(
                f"CREATE TABLE IF NOT EXISTS rm_feed_items{suffix} (position BIGINT PRIMARY KEY,"
                " entry_id TEXT NOT NULL, payer TEXT, payee TEXT, asset TEXT NOT NULL,"
                " scale INTEGER NOT NULL, amount {amount} NOT NULL, note TEXT NOT NULL,"
                " visibility TEXT NOT NULL, at TEXT NOT NULL)"
            )
        )
        w.execute(
            f"CREATE TABLE IF NOT EXISTS rm_feed_members{suffix} (owner TEXT NOT NULL,"
            " position BIGINT NOT NULL, PRIMARY KEY (owner, position))"
        )
        w.execute(
            f"CREATE TABLE IF NOT EXISTS rm_feed_notes{suffix} (entry_id TEXT PRIMARY KEY,"
            " note TEXT NOT NULL, visibility TEXT NOT NULL)"
        )
        w.execute(
            "CREATE TABLE IF NOT EXISTS rm_friendships (a TEXT NOT NULL, b TEXT NOT NULL,"
            " PRIMARY KEY (a, b))"
        )
        w.execute(
            "CREATE TABLE IF NOT EXISTS rm_friend_requests (a TEXT NOT NULL, b TEXT NOT NULL,"
            " PRIMARY KEY (a, b))"
        )

    def apply(self, event: LogEvent) -> None:
        """Take an account opening or a posting into the pending batch, and the note
        and visibility of a hold or request that a later entry settles."""
        if event.topic == TOPIC_ACCOUNT_OPENED:
            b = event.body
            sign = 1 if b["normal"] == "debit" else -1
            self._accounts[b["account"]] = (b["owner"], sign, b["asset"], b["scale"])
        elif event.topic == TOPIC_ENTRY:
            kind = event.body["kind"]
            if kind in _SHOWN:
                self._entries.append(event)
            elif kind in _SETTLED_LATER:
                metadata = event.body.get("metadata") or {}
                if "note" in metadata or "visibility" in metadata:
                    note = seal_text(str(metadata.get("note", event.body["description"])))
                    self._notes[str(event.stream_id)] = (note, _visibility(metadata))

    def flush(self, w: ViewWriter, suffix: str = "") -> None:
        """Write new accounts, items and memberships."""
        w.bulk_insert(
            f"rm_feed_accounts{suffix}",
            _ACCOUNT_COLUMNS,
            [(name, *meta) for name, meta in self._accounts.items()],
            "ON CONFLICT (account) DO NOTHING",
        )
        w.bulk_insert(
            f"rm_feed_notes{suffix}",
            _NOTE_COLUMNS,
            [(entry_id, *kept) for entry_id, kept in self._notes.items()],
            "ON CONFLICT (entry_id) DO NOTHING",
        )
        names = {leg.account for e in self._entries for leg in e.legs()}
        known = dict(self._accounts)
        known.update(self._load(w, [n for n in names if n not in known], suffix))
        notes = self._settled_notes(w, suffix)
        items: list[tuple[Any, ...]] = []
        members: list[tuple[str, int]] = []
        for event in self._entries:
            item = _item(event, known, notes.get(_settles(event) or ""))
            if item is None:
                continue
            row, owners = item
            items.append((*row[:6], w.amount(row[6]), *row[7:]))
            members.extend((owner, event.position) for owner in owners)
        # One statement per table (unnest of arrays on PostgreSQL), not one per row:
        # the follower's share of the machine beside busy web processes.
        w.bulk_insert(f"rm_feed_items{suffix}", _ITEM_COLUMNS, items)
        w.bulk_insert(f"rm_feed_members{suffix}", _MEMBER_COLUMNS, members)
        self.discard()

    def discard(self) -> None:
        """Forget the pending batch."""
        self._accounts.clear()
        self._entries.clear()
        self._notes.clear()

    def _settled_notes(self, w: ViewWriter, suffix: str) -> dict[str, tuple[str, str]]:
        """The (sealed note, visibility) of the holds and requests this batch's entries
        settle, where those entries carry neither of their own."""
        wanted = {
            link for e in self._entries if (link := _settles(e)) is not None and not _own_terms(e)
        }
        found = {k: v for k, v in self._notes.items() if k in wanted}
        missing = sorted(wanted - found.keys())
        for start in range(0, len(missing), _CHUNK):
            chunk = missing[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in w.query(
                f"SELECT entry_id, note, visibility FROM rm_feed_notes{suffix}"
                f" WHERE entry_id IN ({marks})",
                chunk,
            ):
                found[row[0]] = (row[1], row[2])
        return found

    def _load(self, w: ViewWriter, names: Sequence[str], suffix: str) -> dict[str, tuple[Any, ...]]:
        found: dict[str, tuple[Any, ...]] = {}
        for start in range(0, len(names), _CHUNK):
            chunk = names[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in w.query(
                f"SELECT account, owner, sign, asset, scale FROM rm_feed_accounts{suffix}"
                f" WHERE account IN ({marks})",
                chunk,
            ):
                found[row[0]] = tuple(row[1:])
        return found

    # -- input and queries ----------------------------------------------------------------

    @staticmethod
    def befriend(w: ViewWriter, a: str, b: str) -> None:
        """Record a (mutual) friendship between users ``a`` and ``b``."""
        name_arg(a, "user")
        name_arg(b, "user")
        w.executemany(
            "INSERT INTO rm_friendships (a, b) VALUES (?, ?) ON CONFLICT (a, b) DO NOTHING",
            [(a, b), (b, a)],
        )

    @staticmethod
    def offer_friendship(w: ViewWriter, a: str, b: str) -> bool:
        """User ``a`` asks ``b`` for friendship; the friendship exists (see
        :meth:`befriend`) once ``b`` asked ``a`` too. Whether it exists now. One side
        alone never sees the other's friends-only items."""
        name_arg(a, "user")
        name_arg(b, "user")
        if a == b:
            raise InvalidCommand("a user cannot befriend themselves")
        w.execute(
            "INSERT INTO rm_friend_requests (a, b) VALUES (?, ?) ON CONFLICT (a, b) DO NOTHING",
            (a, b),
        )
        if not w.query("SELECT 1 FROM rm_friend_requests WHERE a = ? AND b = ?", (b, a)):
            return False
        FeedView.befriend(w, a, b)
        return True

    @staticmethod
    def unfriend(w: ViewWriter, a: str, b: str) -> None:
        """Remove a friendship."""
        name_arg(a, "user")
        name_arg(b, "user")
        for table in ("rm_friendships", "rm_friend_requests"):
            w.execute(
                f"DELETE FROM {table} WHERE (a = ? AND b = ?) OR (a = ? AND b = ?)", (a, b, b, a)
            )

    @staticmethod
    def feed(
        w: ViewWriter,
        viewer: str,
        *,
        user: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> FeedPage:
        """A page of items ``viewer`` may see, newest first (of ``user`` only, if given).

        ``limit`` is the most items a page holds: an int of at least 1 (InvalidCommand
        otherwise); above :data:`PAGE_LIMIT_MAX` it is that. ``cursor`` is a page's
        ``next_cursor`` (InvalidCommand if it is not one); any cursor gives only items
        this viewer may see."""
        if type(limit) is not int:
            raise InvalidCommand(f"limit is an int, not {type(limit).__name__}")
        if limit < 1:
            raise InvalidCommand(f"limit is the most items of a page: at least 1, not {limit}")
        limit = min(limit, PAGE_LIMIT_MAX)
        name_arg(viewer, "viewer")
        if user is not None:
            name_arg(user, "user")
        if cursor is not None and not (
            isinstance(cursor, str) and cursor.isascii() and cursor.isdigit() and len(cursor) < 19
        ):
            raise InvalidCommand(f"{cursor!r} is not a feed cursor (use a page's next_cursor)")
        before = int(cursor) if cursor else None
        sql = (
            "SELECT i.position, i.entry_id, i.payer, i.payee, i.asset, i.scale, i.amount,"
            " i.note, i.visibility, i.at FROM rm_feed_items i WHERE"
            " (EXISTS (SELECT 1 FROM rm_feed_members m WHERE m.position = i.position"
            "  AND m.owner = ?)"
            " OR i.visibility = 'public'"
            " OR (i.visibility = 'friends' AND EXISTS (SELECT 1 FROM rm_feed_members m"
            "  JOIN rm_friendships f ON f.b = m.owner WHERE m.position = i.position AND f.a = ?)))"
        )
        params: list[Any] = [viewer, viewer]
        if user is not None:
            sql += (
                " AND EXISTS (SELECT 1 FROM rm_feed_members u WHERE u.position = i.position"
                " AND u.owner = ?)"
            )
            params.append(user)
        if before is not None:
            sql += " AND i.position < ?"
            params.append(before)
        sql += " ORDER BY i.position DESC LIMIT ?"
        params.append(limit + 1)
        rows = w.query(sql, params)
        items = tuple(
            FeedItem(
                int(r[0]),
                r[1],
                r[2],
                r[3],
                r[4],
                to_decimal(int(r[6]), Asset(r[4], r[5])),
                open_text(r[7]),
                r[8],
                r[9],
            )
            for r in rows[:limit]
        )
        more = len(rows) > limit
        return FeedPage(items, str(items[-1].position) if more and items else None)


def _settles(event: LogEvent) -> str | None:
    """The hold a capture posts, or the request a payment pays (None for others)."""
    body = event.body
    if body["kind"] == "capture":
        return body.get("hold")
    return body.get("request") if body["kind"] == "posted" else None


def _own_terms(event: LogEvent) -> bool:
    """Whether an entry names its own note or visibility."""
    metadata = event.body.get("metadata") or {}
    return "note" in metadata or "visibility" in metadata


def _visibility(metadata: dict[str, Any]) -> str:
    visibility = metadata.get("visibility", "private")
    return visibility if visibility in VISIBILITIES else "private"


def _item(
    event: LogEvent,
    accounts: dict[str, tuple[Any, ...]],
    settled: tuple[str, str] | None = None,
) -> tuple[tuple[Any, ...], list[str]] | None:
    """The feed row of an entry and its members, or None if no owner is involved. An
    entry that settles a hold or request (``settled``: that one's sealed note and
    visibility) and names neither of its own shows them."""
    # Nets per owner and asset: amounts of different assets are never added up.
    nets: dict[tuple[str, str, int], int] = {}
    for leg in event.legs():
        meta = accounts.get(leg.account)
        if meta is None or meta[0] is None:
            continue
        owner, sign, code, scale = meta
        nets[(owner, code, scale)] = nets.get((owner, code, scale), 0) + sign * leg.amount
    if not nets:
        return None
    # The item's asset: what its first payer paid in (an FX payment shows what was
    # sent), else the first owner's.
    asset = next((k[1:] for k, v in nets.items() if v < 0), next(iter(nets))[1:])
    net = {k[0]: v for k, v in nets.items() if k[1:] == asset}
    payer = min(net, key=lambda o: net[o]) if min(net.values()) < 0 else None
    payee = max(net, key=lambda o: net[o]) if max(net.values()) > 0 else None
    if payee is None:  # received in another asset (FX)
        payee = next((k[0] for k, v in nets.items() if v > 0 and k[0] != payer), None)
    amount = max(abs(v) for v in net.values())
    body = event.body
    metadata = body.get("metadata") or {}
    if settled is not None and not _own_terms(event):
        note, visibility = settled
    else:
        visibility = _visibility(metadata)
        note = seal_text(str(metadata.get("note", body["description"])))
    at = utc_text(datetime.fromisoformat(body["recorded_at"]))
    row = (
        event.position,
        str(event.stream_id),
        payer,
        payee,
        asset[0],
        asset[1],
        amount,
        note,
        visibility,
        at,
    )
    return row, sorted({k[0] for k in nets})

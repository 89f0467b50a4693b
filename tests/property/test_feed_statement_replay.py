"""Feed and statements against a plain replay of the log: for random sequences of
payments (some rejected, some backdated, some reversed), after catch-up and again after
a rebuild from zero, the feed items and every statement equal what a plain model
computes straight from the events."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import Ledger
from ledger.commands import LegInput, PostEntry, ReverseEntry
from ledger.events import TOPIC_ACCOUNT_OPENED, TOPIC_ENTRY, LogEvent
from ledger.model import entry_id_for_key
from ledger.projections import BalancesView, FeedView, ProjectionRunner, statement

USERS = ["ann", "ben", "cat"]
T0 = datetime(2026, 5, 1, tzinfo=UTC)

step = st.tuples(
    st.sampled_from(["pay", "pay", "pay", "reverse"]),
    st.sampled_from([*USERS, "bank"]),
    st.sampled_from(USERS),
    st.integers(1, 4000),
    st.sampled_from(["public", "friends", "private", "bogus"]),
    st.integers(0, 40),
)


def plain_feed(events: list[LogEvent]) -> list[tuple[Any, ...]]:
    owners: dict[str, tuple[str | None, int]] = {}
    out = []
    for e in events:
        if e.topic == TOPIC_ACCOUNT_OPENED:
            owners[e.body["account"]] = (e.body["owner"], 1 if e.body["normal"] == "debit" else -1)
        elif e.topic == TOPIC_ENTRY and e.body["kind"] in ("posted", "capture", "reversal"):
            net: dict[str, int] = {}
            for account, _, amount in e.body["legs"]:
                owner, sign = owners[account]
                if owner is not None:
                    net[owner] = net.get(owner, 0) + sign * int(amount)
            if not net:
                continue
            payer = min(net, key=lambda o: net[o]) if min(net.values()) < 0 else None
            payee = max(net, key=lambda o: net[o]) if max(net.values()) > 0 else None
            meta = e.body["metadata"]
            visibility = meta.get("visibility", "private")
            visibility = visibility if visibility in ("public", "friends", "private") else "private"
            amount = Decimal(max(abs(v) for v in net.values())).scaleb(-2)
            out.append(
                (
                    e.position,
                    payer,
                    payee,
                    amount,
                    str(meta.get("note", e.body["description"])),
                    visibility,
                )
            )
    return sorted(out, reverse=True)


def plain_statement(
    events: list[LogEvent], account: str, start: datetime, end: datetime
) -> tuple[Any, ...]:
    lines = []
    sign = 0
    for e in events:
        if e.topic == TOPIC_ACCOUNT_OPENED and e.body["account"] == account:
            sign = 1 if e.body["normal"] == "debit" else -1
        if e.topic == TOPIC_ENTRY and e.body["kind"] != "pending":
            delta = sum(sign * int(a) for acct, _, a in e.body["legs"] if acct == account)
            if delta:
                lines.append((datetime.fromisoformat(e.body["effective_at"]), e.position, delta))
    lines.sort()
    opening = sum(d for at, _, d in lines if at < start)
    period = [(p, d) for at, p, d in lines if start <= at < end]
    closing = opening + sum(d for _, d in period)
    return opening, [p for p, _ in period], closing


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=st.lists(step, min_size=1, max_size=25))
def test_feed_and_statements_equal_a_plain_replay(steps: list[tuple[Any, ...]]) -> None:
    clock = [T0]
    with (
        tempfile.TemporaryDirectory() as tmp,
        Ledger.open(f"sqlite:///{tmp}/l.db", clock=lambda: clock[0]) as books,
    ):
        books.open_account("bank", "USD", normal="debit")
        for u in USERS:
            books.open_account(u, "USD", owner=u, min_balance="0")
        applied: list[str] = []
        for i, (op, src, dst, amount, visibility, days) in enumerate(steps):
            clock[0] = T0 + timedelta(days=i)
            if op == "reverse" and applied:
                books.submit(
                    ReverseEntry(
                        key=f"rev{i}", entry_id=entry_id_for_key(applied[i % len(applied)])
                    )
                )
                continue
            value = Decimal(amount).scaleb(-2)
            outcome = books.submit(
                PostEntry(
                    key=f"p{i}",
                    legs=(
                        LegInput(account=src, amount=value, asset="USD"),
                        LegInput(account=dst, amount=-value, asset="USD"),
                    ),
                    effective_at=clock[0] - timedelta(days=days),
                    description=f"d{i}",
                    metadata={"visibility": visibility, "note": f"n{i}"}
                    if i % 2
                    else {"visibility": visibility},
                )
            )
            if outcome.ok:
                applied.append(f"p{i}")
        runner = ProjectionRunner.for_ledger(books, [BalancesView(), FeedView()], batch_size=5)
        events = [LogEvent.from_notification(n) for n in books.store.read_log(0, 100_000)]
        for phase in ("catch-up", "rebuild"):
            if phase == "catch-up":
                runner.catch_up()
            else:
                runner.rebuild("balances")
                runner.rebuild("feed")
            with runner.views.snapshot() as w:
                rows = w.query(
                    "SELECT position, payer, payee, amount, scale, note, visibility"
                    " FROM rm_feed_items"
                )
                got = sorted(
                    (
                        (int(p), a, b, Decimal(int(m)).scaleb(-s), n, v)
                        for p, a, b, m, s, n, v in rows
                    ),
                    reverse=True,
                )
                assert got == plain_feed(events), phase
                for account in ["bank", *USERS]:
                    for start, end in (
                        (T0 - timedelta(days=60), T0),
                        (T0, T0 + timedelta(days=10)),
                        (T0 + timedelta(days=10), T0 + timedelta(days=40)),
                    ):
                        s = statement(w, account, start, end)
                        assert s is not None
                        opening, positions, closing = plain_statement(events, account, start, end)
                        assert s.opening == Decimal(opening).scaleb(-2), (phase, account)
                        assert [line.position for line in s.lines] == positions
                        assert s.closing == Decimal(closing).scaleb(-2)
        runner.close()

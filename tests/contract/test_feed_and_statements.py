"""Feed authorization and statements, on every store."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import Ledger
from ledger import payments as pay
from ledger.commands import LegInput, PostEntry
from ledger.errors import InvalidCommand
from ledger.projections import BalancesView, FeedView, ProjectionRunner, statement

USERS = ["ann", "ben", "cat", "dan", "eve"]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def open_wallets(books: Ledger) -> None:
    books.open_account("bank", "USD", normal="debit")
    for u in USERS:
        books.open_account(f"{u}:wallet", "USD", owner=u)


payments_st = st.lists(
    st.tuples(
        st.sampled_from(USERS),
        st.sampled_from(USERS),
        st.sampled_from(["public", "friends", "private"]),
    ),
    min_size=1,
    max_size=25,
)
friends_st = st.sets(st.tuples(st.sampled_from(USERS), st.sampled_from(USERS)), max_size=6)


def allowed(viewer: str, members: set[str], visibility: str, friends: set[tuple[str, str]]) -> bool:
    if viewer in members or visibility == "public":
        return True
    return visibility == "friends" and any((viewer, m) in friends for m in members)


def test_feed_never_shows_what_a_viewer_may_not_see(store_url: str) -> None:
    with Ledger.open(store_url) as books:
        open_wallets(books)
        runner = ProjectionRunner.for_ledger(books, [FeedView()], batch_size=4)
        counter = [0]

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            payments=payments_st,
            friendships=friends_st,
            page=st.integers(1, 4),
            seed=st.integers(0, 9),
        )
        def check(
            payments: list[tuple[str, str, str]],
            friendships: set[tuple[str, str]],
            page: int,
            seed: int,
        ) -> None:
            counter[0] += 1
            run = counter[0]
            commands = [
                PostEntry(
                    key=f"r{run}-p{i}",
                    legs=(
                        LegInput(account=f"{a}:wallet", amount=Decimal("1.00"), asset="USD"),
                        LegInput(account=f"{b}:wallet", amount=Decimal("-1.00"), asset="USD"),
                    ),
                    description=f"note {i}",
                    metadata={"visibility": vis},
                )
                for i, (a, b, vis) in enumerate(payments)
            ]
            books.submit_many(commands)
            runner.catch_up()
            mutual = {(a, b) for a, b in friendships if a != b}
            mutual |= {(b, a) for a, b in mutual}
            with runner.views.transaction() as w:
                w.execute("DELETE FROM rm_friendships")
                for a, b in mutual:
                    FeedView.befriend(w, a, b)
            with runner.views.snapshot() as w:
                rows = w.query("SELECT i.position, i.visibility FROM rm_feed_items i")
                members: dict[int, set[str]] = {}
                for owner, position in w.query("SELECT owner, position FROM rm_feed_members"):
                    members.setdefault(int(position), set()).add(owner)
                visibility = {int(p): v for p, v in rows}
                viewer = random.Random(seed).choice(USERS)
                for user in (None, *USERS):
                    expected = sorted(
                        (
                            p
                            for p in visibility
                            if allowed(viewer, members[p], visibility[p], mutual)
                            and (user is None or user in members[p])
                        ),
                        reverse=True,
                    )
                    seen: list[int] = []
                    cursor = None
                    while True:
                        result = FeedView.feed(w, viewer, user=user, limit=page, cursor=cursor)
                        for item in result.items:
                            assert allowed(viewer, members[item.position], item.visibility, mutual)
                            seen.append(item.position)
                        if result.next_cursor is None:
                            break
                        cursor = result.next_cursor
                    assert seen == expected

        check()
        runner.close()


def test_feed_item_fields_and_stable_cursor(books: Ledger) -> None:
    open_wallets(books)
    runner = ProjectionRunner.for_ledger(books, [FeedView()])
    for i in range(5):
        books.transfer(
            f"p{i}",
            debit="ann:wallet",
            credit="ben:wallet",
            amount="2.50",
            asset="USD",
            metadata={"visibility": "public", "note": f"pizza {i}"},
        )
    runner.catch_up()
    with runner.views.snapshot() as w:
        first = FeedView.feed(w, "cat", limit=2)
    assert [i.note for i in first.items] == ["pizza 4", "pizza 3"]
    item = first.items[0]
    assert (item.payer, item.payee, item.amount, item.visibility) == (
        "ann",
        "ben",
        Decimal("2.50"),
        "public",
    )
    books.transfer(
        "p9",
        debit="ann:wallet",
        credit="ben:wallet",
        amount="1",
        asset="USD",
        metadata={"visibility": "public"},
    )
    runner.catch_up()
    with runner.views.snapshot() as w:
        second = FeedView.feed(w, "cat", limit=2, cursor=first.next_cursor)
    assert [i.note for i in second.items] == ["pizza 2", "pizza 1"]
    runner.close()


def test_an_fx_payment_shows_what_was_paid_never_a_sum_across_assets(books: Ledger) -> None:
    open_wallets(books)
    books.open_account("ben:euros", "EUR", owner="ben")
    books.open_account("fx:usd", "USD", normal="debit")
    books.open_account("fx:eur", "EUR", normal="debit")
    runner = ProjectionRunner.for_ledger(books, [FeedView()])
    paid = pay.fx_pay(
        books,
        "fx",
        payer="ann:wallet",
        payee="ben:euros",
        amount="10.00",
        pay_asset="USD",
        receive_asset="EUR",
        rate="0.5",
        fx_accounts={"USD": "fx:usd", "EUR": "fx:eur"},
    )
    assert paid.ok and books.balance("ben:euros").posted == Decimal("5.00")
    runner.catch_up()
    with runner.views.snapshot() as w:
        (item,) = FeedView.feed(w, "ben").items
    # 10.00 USD sent (not 1000 + 500 minor units of two assets labelled EUR)
    assert (item.payer, item.payee, item.amount, item.asset) == (
        "ann",
        "ben",
        Decimal("10.00"),
        "USD",
    )
    runner.close()


def test_a_settled_hold_or_paid_request_shows_its_note_and_visibility(books: Ledger) -> None:
    """A standard payment's note and visibility are its hold's; the capture that
    settles it shows them (days later, in another batch of the runner, and after a
    rebuild). The same for a money request and its payment. Before, both showed
    private with no note: the entries that settle carry only their flow."""
    open_wallets(books)
    books.transfer("fund", debit="bank", credit="ann:wallet", amount="100", asset="USD")
    runner = ProjectionRunner.for_ledger(books, [FeedView()])
    held = pay.send(
        books, "std", sender="ann:wallet", recipient="ben:wallet", amount="4", asset="USD",
        note="dinner", visibility="public", mode="standard",
    )  # fmt: skip
    asked = pay.request_money(
        books, "ask", requester="cat:wallet", payer="ann:wallet", amount="3", asset="USD",
        note="cinema", visibility="friends",
    )  # fmt: skip
    runner.catch_up()  # the hold and the request are projected in a batch of their own
    assert held.entry_id is not None and asked.entry_id is not None
    pay.settle_p2p(books, "std:settle", held.entry_id)
    pay.accept_request(books, "ask:pay", asked.entry_id)
    runner.catch_up()
    for _ in range(2):
        with runner.views.snapshot() as w:
            seen = {i.note: i for i in FeedView.feed(w, "ann").items}
            strangers = {i.note for i in FeedView.feed(w, "eve").items}
        assert set(seen) == {"dinner", "cinema", ""}  # "": the funding transfer
        assert (seen["dinner"].visibility, seen["dinner"].payee) == ("public", "ben")
        assert (seen["cinema"].visibility, seen["cinema"].payee) == ("friends", "cat")
        assert strangers == {"dinner"}  # public; friends-only needs a friend
        runner.rebuild("feed")
    runner.close()


def test_statements_chain_and_restatements(store_url: str) -> None:
    clock = [T0 + timedelta(days=40)]
    with Ledger.open(store_url, clock=lambda: clock[0]) as books:
        open_wallets(books)
        runner = ProjectionRunner.for_ledger(books, [BalancesView()])
        for day, amount in ((2, "10"), (15, "5"), (33, "7")):
            books.transfer(
                f"d{day}",
                debit="bank",
                credit="ann:wallet",
                amount=amount,
                asset="USD",
                effective_at=T0 + timedelta(days=day),
                description=f"deposit {day}",
            )
        runner.catch_up()
        jan, feb = (T0, T0 + timedelta(days=31)), (T0 + timedelta(days=31), T0 + timedelta(days=59))
        with runner.views.snapshot() as w:
            january = statement(w, "ann:wallet", *jan)
            february = statement(w, "ann:wallet", *feb)
        assert january is not None and february is not None
        assert (january.opening, january.closing) == (Decimal("0.00"), Decimal("15.00"))
        assert [line.running for line in january.lines] == [Decimal("10.00"), Decimal("15.00")]
        assert february.opening == january.closing
        issued_at = clock[0]
        clock[0] = issued_at + timedelta(days=1)
        books.transfer(
            "late",
            debit="bank",
            credit="ann:wallet",
            amount="1",
            asset="USD",
            effective_at=T0 + timedelta(days=20),
            description="backdated",
        )
        runner.catch_up()
        with runner.views.snapshot() as w:
            as_issued = statement(w, "ann:wallet", *jan, known_at=issued_at)
            restated = statement(w, "ann:wallet", *jan, restated_since=issued_at)
            february = statement(w, "ann:wallet", *feb)
        assert as_issued == january
        assert restated is not None and february is not None
        assert restated.closing == Decimal("16.00") == february.opening
        assert [line.description for line in restated.lines if line.restated] == ["backdated"]
        runner.close()


def test_bad_read_arguments_are_invalid_commands(books: Ledger) -> None:
    """The read side checks its own arguments: a typed error, never an OverflowError
    from the database driver or a silently wrong answer."""
    open_wallets(books)
    books.transfer("p", debit="ann:wallet", credit="ben:wallet", amount="1", asset="USD")
    runner = ProjectionRunner.for_ledger(books, [BalancesView(), FeedView()])
    runner.catch_up()
    east = timezone(timedelta(hours=5))
    calls: list[Callable[[Any], Any]] = [
        lambda w: FeedView.feed(w, "ann", cursor="9" * 20),
        lambda w: FeedView.feed(w, "ann", cursor=5),
        lambda w: FeedView.feed(w, "ann", limit="5"),
        lambda w: FeedView.feed(w, "ann", limit=1.5),
        lambda w: FeedView.feed(w, "ann", limit=True),
        lambda w: statement(w, "ann:wallet", T0 + timedelta(days=1), T0),
        lambda w: statement(w, "ann:wallet", datetime(1, 1, 1, tzinfo=east), T0),
        lambda w: BalancesView.balance_as_of(w, "ann:wallet", datetime(1, 1, 1, tzinfo=east)),
        lambda w: BalancesView.balance_as_of(w, "ann:wallet", T0, by="bogus"),
    ]
    with runner.views.snapshot() as w:
        for call in calls:
            with pytest.raises(InvalidCommand):
                call(w)
    with pytest.raises(InvalidCommand):
        runner.rebuild("no-such-view")
    runner.close()


def test_a_friendship_needs_both_users(books: Ledger) -> None:
    open_wallets(books)
    books.transfer(
        "f1",
        debit="ann:wallet",
        credit="ben:wallet",
        amount="1",
        asset="USD",
        metadata={"visibility": "friends", "note": "friends only"},
    )
    runner = ProjectionRunner.for_ledger(books, [FeedView()])
    runner.catch_up()

    def sees(viewer: str) -> bool:
        with runner.views.snapshot() as w:
            return any(i.note == "friends only" for i in FeedView.feed(w, viewer).items)

    with runner.views.transaction() as w:
        assert FeedView.offer_friendship(w, "cat", "ann") is False  # asked alone
    assert not sees("cat")
    with runner.views.transaction() as w:
        assert FeedView.offer_friendship(w, "ann", "cat") is True  # both asked
    assert sees("cat")
    with runner.views.transaction() as w:
        FeedView.unfriend(w, "ann", "cat")
        assert FeedView.offer_friendship(w, "cat", "ann") is False  # a new request again
    assert not sees("cat")
    runner.close()

"""The host's decimal context never reaches the books.

``decimal.getcontext()`` (and ``decimal.DefaultContext``, which new threads copy)
belong to the application: a service may set a precision of 6 for its own
arithmetic, trap ``Inexact``, or print exponents in lower case. The ledger must
compute, compare, fingerprint and format amounts exactly the same whatever they are.
The same day of bookkeeping runs under the default context and under a hostile one
that traps every rounding: the outcomes, balances, read models, statement, feed,
export and audit must be identical, and no operation may raise.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ledger import IdempotencyConflict, Ledger, payments
from ledger.adapters.jsonl import export_lines
from ledger.projections import BalancesView, FeedView, ProjectionRunner, statement
from ledger.projections.audit import audit

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
BIG = "123456789012.123456789012345678"  # 30 digits: beyond the default precision


def _hostile() -> decimal.Context:
    return decimal.Context(
        prec=3,
        rounding=decimal.ROUND_FLOOR,
        Emin=-20,
        Emax=20,
        capitals=0,
        traps=[
            decimal.Inexact,
            decimal.Rounded,
            decimal.FloatOperation,
            decimal.InvalidOperation,
            decimal.DivisionByZero,
            decimal.Overflow,
            decimal.Underflow,
            decimal.Subnormal,
            decimal.Clamped,
        ],
    )


@contextmanager
def _host_context(ctx: decimal.Context | None) -> Iterator[None]:
    """Run with ``ctx`` as this thread's context and as the template of new threads."""
    if ctx is None:
        yield
        return
    default = decimal.DefaultContext
    saved = (
        default.prec,
        default.rounding,
        default.Emin,
        default.Emax,
        default.capitals,
        dict(default.traps),
    )
    default.prec, default.rounding, default.Emin, default.Emax = (
        ctx.prec,
        ctx.rounding,
        ctx.Emin,
        ctx.Emax,
    )
    default.capitals = ctx.capitals
    for signal, on in ctx.traps.items():
        default.traps[signal] = on
    try:
        with decimal.localcontext(ctx):
            yield
    finally:
        default.prec, default.rounding, default.Emin, default.Emax, default.capitals = saved[:5]
        for signal, on in saved[5].items():
            default.traps[signal] = on


def _day(db: Path) -> list[object]:
    """A day of bookkeeping; what it shows (values: ``repr`` them under the default
    context, as ``repr`` of a Decimal follows the current one)."""
    seen: list[object] = []
    ticks = iter(range(10_000))

    def clock() -> datetime:
        return T0 + timedelta(seconds=next(ticks))

    with Ledger.open(f"sqlite:///{db}", clock=clock) as books:
        books.declare_asset("TOKEN", 18)
        books.open_account("bank", "USD", normal="debit")
        books.open_account("mint", "TOKEN", normal="debit")
        books.open_account("platform:fees", "USD")
        for user in ("alice", "bob", "carol"):
            books.open_account(f"users:{user}:wallet", "USD", min_balance="0", owner=user)
            books.open_account(f"users:{user}:tokens", "TOKEN", owner=user)
        books.open_account("shop", "USD", owner="shop")
        out = [
            books.transfer(
                "fund-a", debit="bank", credit="users:alice:wallet", amount="1000.10", asset="USD"
            ),
            books.transfer(
                "mint-a", debit="mint", credit="users:alice:tokens", amount=BIG, asset="TOKEN"
            ),
            books.transfer(
                "mint-a", debit="mint", credit="users:alice:tokens", amount=BIG, asset="TOKEN"
            ),
            payments.send(
                books,
                "p2p-1",
                sender="users:alice:wallet",
                recipient="users:bob:wallet",
                amount="12.34",
                asset="USD",
                fee="0.25",
                fee_account="platform:fees",
                note="lunch",
                visibility="public",
            ),
            payments.send(
                books,
                "tok-1",
                sender="users:alice:tokens",
                recipient="users:bob:tokens",
                amount="0.000000000000000001",
                asset="TOKEN",
            ),
            payments.charge(
                books,
                "charge-1",
                customer="users:alice:wallet",
                merchant="shop",
                amount="99.99",
                asset="USD",
                fee="2.91",
                platform="platform:fees",
            ),
        ]
        out.append(payments.refund(books, "refund-1", out[-1].entry_id, amount="10.01"))
        held = books.hold(
            "hold-1",
            [
                ("users:alice:tokens", BIG[:-1] + "7", "TOKEN"),
                ("users:carol:tokens", "-" + BIG[:-1] + "7", "TOKEN"),
            ],
        )
        out.append(held)
        out.append(
            books.post_hold(
                "capture-1",
                held.entry_id,
                [("users:alice:tokens", "1.5", "TOKEN"), ("users:carol:tokens", "-1.5", "TOKEN")],
            )
        )
        split = payments.split_bill(
            books,
            "split-1",
            requester="users:bob:wallet",
            payers=["users:alice:wallet", "users:carol:wallet"],
            amount="10.00",
            asset="USD",
        )
        seen.append(split)
        seen += out
        with pytest.raises(IdempotencyConflict):
            # the same key, an amount different in its 30th digit
            books.transfer(
                "mint-a",
                debit="mint",
                credit="users:alice:tokens",
                amount=BIG[:-1] + "9",
                asset="TOKEN",
            )
        for name in sorted(
            ["bank", "mint", "platform:fees", "shop"]
            + [f"users:{u}:{w}" for u in ("alice", "bob", "carol") for w in ("wallet", "tokens")]
        ):
            seen.append(books.balance(name))
        runner = ProjectionRunner.for_ledger(books, [BalancesView(), FeedView()])
        try:
            runner.catch_up()
        finally:
            runner.close()
        views = books.open_views()
        with views.snapshot() as w:
            for name in ("users:alice:tokens", "users:alice:wallet", "shop"):
                row = BalancesView.balance(w, name)
                assert row is not None
                seen += [row, row.available, row.signed]
            seen.append(BalancesView.totals(w))
            seen.append(statement(w, "users:alice:tokens", T0, T0 + timedelta(days=1)))
            seen.append(FeedView.feed(w, "user:bob", limit=50))
        views.close()
        seen += [line.decode() for line in export_lines(books)]
        seen.append(audit(books.store).to_json())
    return seen


def test_the_hosts_decimal_context_changes_nothing(tmp_path: Path) -> None:
    expected = [repr(value) for value in _day(tmp_path / "default.db")]
    with _host_context(_hostile()):
        values = _day(tmp_path / "hostile.db")
    assert decimal.getcontext().prec == 28  # restored
    assert [repr(value) for value in values] == expected

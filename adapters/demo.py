"""A scripted day of payments on a fresh ledger (the README's first command)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal, TextIO

from ledger.assets import plain
from ledger.commands.models import LegInput, PostEntry
from ledger.commands.service import Ledger

__all__ = ["run_demo"]

ACCOUNTS: list[tuple[str, Literal["debit", "credit"], str | None]] = [
    ("bank:settlement:usd", "debit", None),
    ("platform:revenue:usd", "credit", None),
    ("users:alice:wallet", "credit", "0"),
    ("users:bob:wallet", "credit", "0"),
    ("users:carol:wallet", "credit", "0"),
    ("merchants:cafe:wallet", "credit", "0"),
]


def _leg(account: str, amount: str) -> LegInput:
    return LegInput(account=account, amount=Decimal(amount), asset="USD")


def run_demo(books: Ledger, out: TextIO) -> bool:
    """Run the scripted day; print balances; return True if the books balance."""
    run = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")  # fresh keys per run
    for account, normal, floor in ACCOUNTS:
        owner = account.split(":")[1] if account.startswith(("users", "merchants")) else None
        books.open_account(account, "USD", normal=normal, min_balance=floor, owner=owner)
    _p2p_day(books, run)
    _card_day(books, run)
    return _print_balances(books, out)


def _p2p_day(books: Ledger, run: str) -> None:
    """Deposits, a P2P payment (sent twice: the retry changes nothing), a bill split."""
    bank = "bank:settlement:usd"
    for user, amount in (("alice", "120.00"), ("bob", "40.00"), ("carol", "15.00")):
        books.transfer(
            f"{run}:deposit:{user}",
            debit=bank,
            credit=f"users:{user}:wallet",
            amount=amount,
            asset="USD",
            description="bank deposit",
        )
    books.transfer(
        f"{run}:p2p:1",
        debit="users:alice:wallet",
        credit="users:bob:wallet",
        amount="25.00",
        asset="USD",
        description="pizza",
    )
    # a retried request changes nothing
    books.transfer(
        f"{run}:p2p:1",
        debit="users:alice:wallet",
        credit="users:bob:wallet",
        amount="25.00",
        asset="USD",
        description="pizza",
    )
    # Bill split: Bob paid for dinner; Alice and Carol pay him back in one atomic batch.
    share = [f"{run}:split:alice", f"{run}:split:carol"]
    books.atomic(
        f"{run}:split",
        [
            PostEntry(
                key=share[0],
                legs=(_leg("users:alice:wallet", "20.00"), _leg("users:bob:wallet", "-20.00")),
            ),
            PostEntry(
                key=share[1],
                legs=(_leg("users:carol:wallet", "15.00"), _leg("users:bob:wallet", "-15.00")),
            ),
        ],
    )


def _card_day(books: Ledger, run: str) -> None:
    """A card purchase captured in part with a fee, a released hold, a refund, a withdrawal."""
    bank = "bank:settlement:usd"
    # Card purchase: authorise 30.00, capture 27.50 with a 0.50 platform fee; release the rest.
    hold = books.hold(
        f"{run}:card:auth",
        [_leg("users:alice:wallet", "30.00"), _leg("merchants:cafe:wallet", "-30.00")],
        expires_at=datetime.now(UTC) + timedelta(days=7),
        description="card auth",
    )
    assert hold.entry_id is not None
    capture = books.post_hold(
        f"{run}:card:capture",
        hold.entry_id,
        [_leg("users:alice:wallet", "27.50"), _leg("merchants:cafe:wallet", "-27.50")],
    )
    books.transfer(
        f"{run}:fee",
        debit="merchants:cafe:wallet",
        credit="platform:revenue:usd",
        amount="0.50",
        asset="USD",
        description="platform fee",
    )
    # A second authorisation is released by the merchant.
    other = books.hold(
        f"{run}:card:auth2",
        [_leg("users:bob:wallet", "10.00"), _leg("merchants:cafe:wallet", "-10.00")],
    )
    assert other.entry_id is not None
    books.void_hold(f"{run}:card:void2", other.entry_id)
    # Refund 7.50 of the captured purchase, then Bob withdraws to his bank.
    assert capture.entry_id is not None
    books.reverse(
        f"{run}:refund",
        capture.entry_id,
        [_leg("merchants:cafe:wallet", "7.50"), _leg("users:alice:wallet", "-7.50")],
    )
    books.transfer(
        f"{run}:withdraw:bob",
        debit="users:bob:wallet",
        credit=bank,
        amount="50.00",
        asset="USD",
        description="withdrawal",
    )


def _print_balances(books: Ledger, out: TextIO) -> bool:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    out.write(f"{'account':<24}{'normal':>8}{'posted':>12}{'pending':>10}{'available':>12}\n")
    for account, _, _ in ACCOUNTS:
        b = books.balance(account)
        out.write(f"{account:<24}{b.normal:>8}{b.posted:>12}{b.pending_out:>10}{b.available:>12}\n")
        totals[b.asset] += b.posted if b.normal == "debit" else b.posted.copy_negate()
    balanced = all(v == 0 for v in totals.values())
    verdict = "balanced" if balanced else "NOT balanced"
    sums = ", ".join(f"{asset} {plain(total)}" for asset, total in sorted(totals.items()))
    out.write(f"Debits minus credits, per currency: {sums}: the books are {verdict}.\n")
    return balanced

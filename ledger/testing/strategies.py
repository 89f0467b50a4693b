"""Hypothesis strategies for ledger data: exact amounts, account ids, balanced legs,
entries and P2P payments."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from ledger.assets import scaled
from ledger.commands.models import LegInput, PostEntry

__all__ = ["account_ids", "amounts", "balanced_legs", "entries", "idempotency_keys", "p2p"]


def amounts(
    scale: int = 2, *, min_minor: int = 1, max_minor: int = 10**9
) -> st.SearchStrategy[Decimal]:
    """Exact positive amounts with ``scale`` decimals (never floats)."""
    return st.integers(min_minor, max_minor).map(lambda m: scaled(m, scale))


def account_ids(prefix: str = "users") -> st.SearchStrategy[str]:
    """Readable account ids such as ``users:42:wallet``."""
    return st.integers(0, 10**6).map(lambda n: f"{prefix}:{n}:wallet")


def idempotency_keys() -> st.SearchStrategy[str]:
    """Unique-looking idempotency keys."""
    return st.uuids().map(lambda u: f"req-{u}")


def balanced_legs(
    accounts: Sequence[str], asset: str = "USD", scale: int = 2, *, max_legs: int = 4
) -> st.SearchStrategy[tuple[LegInput, ...]]:
    """2 to ``max_legs`` legs over distinct ``accounts`` that sum to zero."""

    @st.composite
    def build(draw: Any) -> tuple[LegInput, ...]:
        n = draw(st.integers(2, min(max_legs, len(accounts))))
        chosen = draw(st.permutations(list(accounts)))[:n]
        debits = [draw(st.integers(1, 10**6)) for _ in range(n - 1)]
        legs = [(a, m) for a, m in zip(chosen[:-1], debits, strict=True)]
        legs.append((chosen[-1], -sum(debits)))
        return tuple(LegInput(account=a, amount=scaled(m, scale), asset=asset) for a, m in legs)

    return build()


def entries(
    accounts: Sequence[str], asset: str = "USD", scale: int = 2
) -> st.SearchStrategy[PostEntry]:
    """Balanced ``PostEntry`` commands with fresh keys."""
    return st.builds(
        lambda key, legs: PostEntry(key=key, legs=legs),
        idempotency_keys(),
        balanced_legs(accounts, asset, scale),
    )


def p2p(wallets: Sequence[str], asset: str = "USD") -> st.SearchStrategy[dict[str, Any]]:
    """Keyword arguments for :func:`ledger.payments.send` between two ``wallets``."""

    @st.composite
    def build(draw: Any) -> dict[str, Any]:
        sender, recipient = draw(st.permutations(list(wallets)))[:2]
        return {
            "key": draw(idempotency_keys()),
            "sender": sender,
            "recipient": recipient,
            "amount": draw(amounts(max_minor=10_000)),
            "asset": asset,
            "note": draw(st.text(max_size=20).filter(lambda t: "\x00" not in t)),
            "visibility": draw(st.sampled_from(["public", "friends", "private"])),
        }

    return build()

"""Hypothesis strategies for ledger data: exact amounts, account ids, balanced legs,
entries and P2P payments.

Every strategy makes only data the ledger accepts for the arguments given: amounts
have the asset's decimals (an ISO 4217 currency's own scale unless ``scale`` says
otherwise), within the ledger's limits. Arguments that could only make data the
ledger refuses (a scale beyond 18, amounts not positive, fewer than two distinct
accounts, more legs than an entry may have, an account id prefix the ledger refuses)
raise hypothesis' ``InvalidArgument`` when the strategy is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from pydantic import ValidationError

from ledger.assets import AMOUNT_MAX_MINOR, SCALE_MAX, iso_currency, scaled
from ledger.commands.models import ACCOUNT_ID_RULE, LEGS_MAX, LegInput, PostEntry

__all__ = ["account_ids", "amounts", "balanced_legs", "entries", "idempotency_keys", "p2p"]

#: The largest account number :func:`account_ids` draws.
_ACCOUNT_NUMBER_MAX = 10**6


def _scale(asset: str, scale: int | None) -> int:
    """``scale``, or the ISO 4217 currency's minor units when it is None."""
    if scale is None:
        currency = iso_currency(asset)
        if currency is None:
            raise InvalidArgument(f"asset {asset!r} is not an ISO 4217 currency: pass its scale")
        return currency.scale
    if not isinstance(scale, int) or isinstance(scale, bool) or not 0 <= scale <= SCALE_MAX:
        raise InvalidArgument(f"scale must be an integer from 0 to {SCALE_MAX}, not {scale!r}")
    return scale


def _distinct(accounts: Sequence[str], what: str) -> list[str]:
    """The distinct ``accounts``, in order; at least two."""
    distinct = list(dict.fromkeys(accounts))
    if len(distinct) < 2:
        raise InvalidArgument(f"{what} needs at least two distinct accounts, not {accounts!r}")
    return distinct


def amounts(
    scale: int = 2, *, min_minor: int = 1, max_minor: int = 10**9
) -> st.SearchStrategy[Decimal]:
    """Exact positive amounts with ``scale`` decimals (never floats), from ``min_minor``
    to ``max_minor`` minor units (1 to the ledger's maximum amount)."""
    _scale("", scale)
    if not 1 <= min_minor <= max_minor <= AMOUNT_MAX_MINOR:
        raise InvalidArgument(
            f"amounts need 1 <= min_minor <= max_minor <= {AMOUNT_MAX_MINOR}, "
            f"not {min_minor} and {max_minor}"
        )
    return st.integers(min_minor, max_minor).map(lambda m: scaled(m, scale))


def account_ids(prefix: str = "users") -> st.SearchStrategy[str]:
    """Readable account ids such as ``users:42:wallet``."""
    try:
        ACCOUNT_ID_RULE.validate_python(f"{prefix}:{_ACCOUNT_NUMBER_MAX}:wallet", strict=True)
    except ValidationError:
        raise InvalidArgument(f"prefix {prefix!r} makes account ids the ledger refuses") from None
    return st.integers(0, _ACCOUNT_NUMBER_MAX).map(lambda n: f"{prefix}:{n}:wallet")


def idempotency_keys() -> st.SearchStrategy[str]:
    """Unique-looking idempotency keys."""
    return st.uuids().map(lambda u: f"req-{u}")


def balanced_legs(
    accounts: Sequence[str], asset: str = "USD", scale: int | None = None, *, max_legs: int = 4
) -> st.SearchStrategy[tuple[LegInput, ...]]:
    """2 to ``max_legs`` legs over distinct ``accounts`` that sum to zero, with
    ``scale`` decimals (default: the ISO 4217 currency's)."""
    chosen_from = _distinct(accounts, "balanced_legs")
    decimals = _scale(asset, scale)
    if not 2 <= max_legs <= LEGS_MAX:
        raise InvalidArgument(f"max_legs must be from 2 to {LEGS_MAX}, not {max_legs!r}")

    @st.composite
    def build(draw: Any) -> tuple[LegInput, ...]:
        n = draw(st.integers(2, min(max_legs, len(chosen_from))))
        chosen = draw(st.permutations(chosen_from))[:n]
        debits = [draw(st.integers(1, 10**6)) for _ in range(n - 1)]
        legs = [(a, m) for a, m in zip(chosen[:-1], debits, strict=True)]
        legs.append((chosen[-1], -sum(debits)))
        return tuple(LegInput(account=a, amount=scaled(m, decimals), asset=asset) for a, m in legs)

    return build()


def entries(
    accounts: Sequence[str], asset: str = "USD", scale: int | None = None
) -> st.SearchStrategy[PostEntry]:
    """Balanced ``PostEntry`` commands with fresh keys (``scale`` as for
    :func:`balanced_legs`)."""
    return st.builds(
        lambda key, legs: PostEntry(key=key, legs=legs),
        idempotency_keys(),
        balanced_legs(accounts, asset, scale),
    )


def p2p(
    wallets: Sequence[str], asset: str = "USD", scale: int | None = None
) -> st.SearchStrategy[dict[str, Any]]:
    """Keyword arguments for :func:`ledger.payments.send` between two distinct
    ``wallets``: amounts of 1 to 10,000 minor units with the asset's decimals
    (``scale``, default: the ISO 4217 currency's)."""
    chosen_from = _distinct(wallets, "p2p")
    decimals = _scale(asset, scale)

    @st.composite
    def build(draw: Any) -> dict[str, Any]:
        sender, recipient = draw(st.permutations(chosen_from))[:2]
        return {
            "key": draw(idempotency_keys()),
            "sender": sender,
            "recipient": recipient,
            "amount": draw(amounts(decimals, max_minor=10_000)),
            "asset": asset,
            "note": draw(st.text(max_size=20).filter(lambda t: "\x00" not in t)),
            "visibility": draw(st.sampled_from(["public", "friends", "private"])),
        }

    return build()

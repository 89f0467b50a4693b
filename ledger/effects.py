"""How an entry moves balances: shared by the write side, projections and the audit."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

from ledger.model import AccountStatus, FreezeMode, Leg

__all__ = ["capture_excess", "entry_effects", "leg_effect", "refused_by_lifecycle"]


def leg_effect(
    normal_sign: int, amount: int, *, pending: bool, sign: int = 1
) -> tuple[int, int, int]:
    """The change of (posted, pending_out, pending_in) of an account for one leg.

    ``normal_sign`` is +1 for a debit-normal account and -1 for a credit-normal one;
    ``amount`` is the leg's signed amount (debit > 0); ``sign=-1`` releases a hold.
    """
    oriented = normal_sign * amount
    if not pending:
        return (oriented * sign, 0, 0)
    if oriented < 0:
        return (0, -oriented * sign, 0)
    return (0, 0, oriented * sign)


def entry_effects(
    kind: str, legs: Sequence[Leg], releases: Sequence[Leg]
) -> Iterator[tuple[Leg, bool, int]]:
    """Each leg an entry applies, as (leg, pending, sign): the released hold legs
    first, then the entry's own legs (pending only for a ``pending`` entry)."""
    for leg in releases:
        yield leg, True, -1
    for leg in legs:
        yield leg, kind == "pending", 1


def refused_by_lifecycle(
    status: AccountStatus, freeze: FreezeMode | None, amount: int, *, sign: int = 1
) -> str | None:
    """Why an account's lifecycle forbids a leg (``None`` if it allows it): a closed
    account takes nothing; a frozen one takes no debit (``freeze="debits"``) or no leg
    at all (``"all"``). Releasing a hold (``sign=-1``) is always allowed, so holds on a
    frozen account can still be voided or expire."""
    if status == "open" or sign < 0:
        return None
    if status == "closed":
        return "closed"
    if freeze == "all" or amount > 0:
        return "frozen"
    return None


def capture_excess(legs: Sequence[Leg], held: Sequence[Leg]) -> str | None:
    """Why a capture's ``legs`` post more than the hold's ``held`` legs reserved
    (``None`` if they do not): each leg is on an account and asset the hold reserved,
    on the same side and no larger, and an account's legs together are no larger than
    its reservation. One rule for the write side and the audit, so that a capture the
    ledger accepts is one the audit passes."""
    reserved: dict[tuple[str, str], int] = defaultdict(int)
    for leg in held:
        reserved[(leg.account, leg.asset)] += leg.amount
    posted: dict[tuple[str, str], int] = defaultdict(int)
    for leg in legs:
        where = (leg.account, leg.asset)
        limit = reserved.get(where, 0)
        posted[where] += leg.amount
        total = posted[where]
        for amount in (leg.amount, total):
            if limit == 0 or (amount > 0) != (limit > 0) or abs(amount) > abs(limit):
                return (
                    f"posting {amount} minor units of {leg.asset} on {leg.account!r} exceeds "
                    f"what the hold reserved there ({limit})"
                )
    return None

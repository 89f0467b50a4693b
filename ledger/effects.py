"""How an entry moves balances: shared by the write side, projections and the audit."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from ledger.assets import iso_currency, plain, scaled
from ledger.model import AccountStatus, FreezeMode, Leg

__all__ = [
    "CaptureExcess",
    "capture_excess",
    "capture_excess_of",
    "entry_effects",
    "leg_effect",
    "money",
    "refused_by_lifecycle",
]


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


@dataclass(frozen=True, slots=True)
class CaptureExcess:
    """Where a capture posts more than its hold reserved: the account, the asset, what
    the hold reserved on that side and what the capture posts there (signed minor
    units, debits positive)."""

    account: str
    asset: str
    reserved: int
    posted: int

    def describe(self, scale_of: Callable[[str], int | None] | None = None) -> str:
        """In words, amounts as exact decimals in the asset's scale (``scale_of`` gives
        a declared asset's scale; an ISO 4217 currency's is known)."""
        what = "debits" if self.posted > 0 else "credits"
        posted = money(abs(self.posted), self.asset, scale_of)
        reserved = money(abs(self.reserved), self.asset, scale_of)
        return (
            f"{what} of {posted} on {self.account!r} exceed what the hold reserved there "
            f"({reserved})"
        )


def money(minor: int, asset: str, scale_of: Callable[[str], int | None] | None = None) -> str:
    """``minor`` units of ``asset`` as an exact decimal string with the asset code
    (``-3000.01 USD``); in minor units, said so, if the asset's scale is unknown."""
    scale = None if scale_of is None else scale_of(asset)
    if scale is None:
        iso = iso_currency(asset)
        scale = None if iso is None else iso.scale
    if scale is None:
        return f"{minor} minor units of {asset}"
    return f"{plain(scaled(minor, scale))} {asset}"


def capture_excess_of(legs: Sequence[Leg], held: Sequence[Leg]) -> CaptureExcess | None:
    """Where a capture's ``legs`` post more than the hold's ``held`` legs reserved
    (``None`` if they do not). Reservations are per account, asset and side (debit or
    credit): each leg goes to a side the hold reserved, and the legs of one side
    together are no larger than its reservation (so a hold captured as it is always
    passes, whatever legs it has). One rule for the write side and the audit, so that a
    capture the ledger accepts is one the audit passes."""
    reserved: dict[tuple[str, str, bool], int] = defaultdict(int)
    for leg in held:
        reserved[(leg.account, leg.asset, leg.amount > 0)] += leg.amount
    posted: dict[tuple[str, str, bool], int] = defaultdict(int)
    for leg in legs:
        side = (leg.account, leg.asset, leg.amount > 0)
        posted[side] += leg.amount
        limit = reserved.get(side, 0)
        if limit == 0 or abs(posted[side]) > abs(limit):
            return CaptureExcess(leg.account, leg.asset, limit, posted[side])
    return None


def capture_excess(
    legs: Sequence[Leg],
    held: Sequence[Leg],
    scale_of: Callable[[str], int | None] | None = None,
) -> str | None:
    """Why a capture's ``legs`` post more than the hold's ``held`` legs reserved
    (``None`` if they do not), in words (see :func:`capture_excess_of`): amounts as
    exact decimals in the asset's scale with its code."""
    excess = capture_excess_of(legs, held)
    return None if excess is None else excess.describe(scale_of)

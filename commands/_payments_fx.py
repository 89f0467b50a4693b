"""The FX payment recipe: pay in one asset, the payee receives another.

Re-exported by :mod:`ledger.commands.payments` and :mod:`ledger.payments`, which
users import; see there for what every recipe guarantees.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_DOWN, Decimal

from ledger.assets import parse_decimal
from ledger.commands import builders
from ledger.commands._payments_checks import (
    _EXACT,
    _ROUNDING,
    _arithmetic,
    _distinct,
    _meta,
    _positive,
)
from ledger.commands.builders import AmountLike
from ledger.commands.flows import Steps, flow, read, write
from ledger.commands.models import ASSET_CODE_RULE, valid_name
from ledger.errors import InvalidAmount, InvalidCommand
from ledger.outcome import Outcome

__all__ = ["fx_pay"]


@flow
def fx_pay(
    key: str,
    *,
    payer: str,
    payee: str,
    amount: AmountLike,
    pay_asset: str,
    receive_asset: str,
    rate: AmountLike,
    fx_accounts: Mapping[str, str],
    note: str = "",
) -> Steps[Outcome]:
    """Pay ``amount`` of ``pay_asset`` and have the payee receive ``receive_asset``
    at ``rate`` (receive units per pay unit), through the platform's FX account of
    each asset (``fx_accounts[asset]``). The received amount is ``amount * rate``
    rounded down to the receiving asset's decimals (the platform keeps the sub-unit),
    computed exactly at any size.

    Entry: payer debit and FX(pay) credit in ``pay_asset``; FX(receive) debit and
    payee credit in ``receive_asset``; each asset balances. The rate is recorded in
    the metadata.
    """
    paid = _positive(amount)
    exact = parse_decimal(rate)
    if exact <= 0:
        raise InvalidAmount(f"the rate must be positive, not {exact}")
    valid_name(ASSET_CODE_RULE, pay_asset, "pay_asset")
    valid_name(ASSET_CODE_RULE, receive_asset, "receive_asset")
    if pay_asset == receive_asset:
        raise InvalidCommand(
            f"an FX payment converts between two assets, not {pay_asset} to itself"
        )
    if not isinstance(fx_accounts, Mapping):
        raise InvalidCommand("fx_accounts maps each asset to the platform's FX account")
    try:
        fx_out, fx_in = fx_accounts[pay_asset], fx_accounts[receive_asset]
    except KeyError as e:
        raise InvalidCommand(f"no FX account for {e.args[0]}") from None
    _distinct(payer=payer, payee=payee, fx_out=fx_out, fx_in=fx_in)
    target = yield from read(lambda books: books.asset(receive_asset))
    with _arithmetic("the converted amount"):
        product = _EXACT.multiply(paid, exact)
        received = product.quantize(
            Decimal(1).scaleb(-target.scale), rounding=ROUND_DOWN, context=_ROUNDING
        )
    if received <= 0:
        raise InvalidAmount("the converted amount rounds to zero")
    legs = [
        (payer, paid, pay_asset),
        (fx_out, paid.copy_negate(), pay_asset),
        (fx_in, received, receive_asset),
        (payee, received.copy_negate(), receive_asset),
    ]
    meta = _meta(
        "fx", None, rate=str(exact), pair=f"{pay_asset}/{receive_asset}", note=note or None
    )
    return (yield from write(builders.post(key, legs, description=note, metadata=meta)))

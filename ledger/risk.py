"""The risk hook: a policy that may veto a payment before anything is committed.

A policy is any callable taking a :class:`RiskCheck` and returning ``None`` (allow) or
a reason (veto). It runs inside the write decision, on the balances the decision sees,
for the commands that bring new legs (:class:`PostEntry`, :class:`PlaceHold`,
:class:`PayRequest`, also inside atomic batches); not for what follows from an entry
already recorded: a capture of a hold (:class:`PostHold`, within what the hold
reserved), a release, or a reversal (:class:`ReverseEntry`, refunds). A vetoed
command is rejected with :class:`~ledger.errors.PaymentVetoed` and the veto is recorded
under its idempotency key: a retry returns the same veto, even if the policy would
now allow it.

A policy must be quick and must not write to the ledger; it may run more than once
for one command (when a decision is retried after a concurrent write).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ledger.accounts import AccountBalance

__all__ = ["RiskCheck", "RiskPolicy"]


@dataclass(frozen=True, slots=True)
class RiskCheck:
    """What a policy sees: the command, its legs, and the accounts' current balances."""

    #: The command being decided (its ``metadata`` carries the flow, see ledger.payments).
    command: Any
    #: (account, amount, asset) per leg; a positive amount debits the account.
    legs: tuple[tuple[str, Any, str], ...]
    #: Current balances of the accounts the legs name (absent if not opened).
    balances: Mapping[str, AccountBalance]


RiskPolicy = Callable[[RiskCheck], str | None]
"""Return ``None`` to allow the payment, or a short reason to veto it."""

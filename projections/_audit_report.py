"""The audit's report and its findings, and how the findings word amounts: exact
decimals in the asset's scale, signed with debits positive."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger.assets import plain, scaled

#: Findings kept in a report (the count is always exact).
FINDINGS_MAX = 1_000


@dataclass(frozen=True, slots=True)
class Finding:
    """One broken invariant, located in the log. Where it is about an amount, also
    the ``account`` (if one) and the ``asset``, and the ``expected`` and ``actual``
    amounts as exact decimal strings in the asset's scale, signed debits positive
    (for ``balance`` and ``read_model``: the posted balance; ``unbalanced`` and
    ``conservation``: the sum of the asset's legs or balances; ``hold``: what the hold
    reserved and what the capture posts on that account's side)."""

    position: int
    code: str
    message: str
    stream: str = ""
    account: str = ""
    asset: str = ""
    expected: str | None = None
    actual: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The finding in the report (the fields of schema 1, then the added ones)."""
        return {
            "position": self.position,
            "code": self.code,
            "stream": self.stream,
            "message": self.message,
            "account": self.account or None,
            "asset": self.asset or None,
            "expected": self.expected,
            "actual": self.actual,
        }


#: What the signed figures in the messages are.
SIGNS = "(signed, debits positive)"


def _amount(minor: int, scale: int) -> str:
    """Minor units as an exact decimal string with ``scale`` decimals."""
    return plain(scaled(minor, scale))


def _balances(sign: int, scale: int, asset: str, held: tuple[int, int, int]) -> str:
    """An account's (posted, pending_out, pending_in), kept on the account's normal
    side in minor units, in words: signed decimals, debits positive."""
    posted, out, inn = _signed(sign, held)
    return (
        f"posted {_amount(posted, scale)}, pending_out {_amount(out, scale)}, "
        f"pending_in {_amount(inn, scale)} {asset} {SIGNS}"
    )


def _signed(sign: int, held: tuple[int, int, int]) -> tuple[int, int, int]:
    """(posted, pending_out, pending_in) of the account's normal side as signed minor
    units, debits positive (what is held going out lowers the normal-side balance)."""
    posted, out, inn = held
    return sign * posted, -sign * out, sign * inn


@dataclass(slots=True)
class AuditReport:
    """The outcome of an audit: verdict, counts, trial balance and findings."""

    position: int = 0
    events: int = 0
    entries: int = 0
    accounts: int = 0
    findings: list[Finding] = field(default_factory=list)
    findings_total: int = 0
    trial_balance: dict[str, dict[str, Any]] = field(default_factory=dict)
    balances: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Each replayed account's asset, scale and normal side (+1 debit, -1 credit).
    account_assets: dict[str, tuple[str, int, int]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """True when no finding was made."""
        return self.findings_total == 0

    def to_json(self) -> dict[str, Any]:
        """The documented report (schema version 1)."""
        return {
            "schema": "ledger-audit/1",
            "verdict": "clean" if self.clean else "findings",
            "position": self.position,
            "counts": {
                "events": self.events,
                "entries": self.entries,
                "accounts": self.accounts,
                "findings": self.findings_total,
            },
            "trial_balance": dict(sorted(self.trial_balance.items())),
            "findings": [f.to_json() for f in self.findings],
        }

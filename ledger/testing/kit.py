"""The in-memory ledger and the invariants state machine of :mod:`ledger.testing`."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from hypothesis.stateful import RuleBasedStateMachine, invariant

from ledger.adapters.opening import Ledger
from ledger.assets import EXACT
from ledger.errors import LedgerError
from ledger.outcome import Outcome
from ledger.projections import BalancesView, ProjectionRunner

__all__ = ["LedgerInvariants", "memory_ledger"]


def memory_ledger(**options: Any) -> Ledger:
    """A ledger on a private in-memory store (gone when closed). ``options`` go to
    :meth:`Ledger.open` (``clock``, ``risk``...)."""
    return Ledger.open("sqlite:///:memory:", **options)


def _outcomes(out: Any) -> list[Outcome]:
    """The outcomes a write's result carries: an Outcome, a flow's result with an
    ``outcome``, or a list of outcomes (``submit_many``, ``submit_all``)."""
    outcome = getattr(out, "outcome", out)  # flows may return a richer result
    if isinstance(outcome, Outcome):
        return [outcome]
    if isinstance(outcome, list | tuple) and all(isinstance(o, Outcome) for o in outcome):
        return list(outcome)
    return []


def _result(call: Callable[[], Any]) -> tuple[str, Any]:
    """("applied", result), or the code of the error raised or of the outcomes that did
    not apply (``submit`` returns a rejection instead of raising it)."""
    try:
        out = call()
    except LedgerError as e:
        return e.code, e
    outcomes = _outcomes(out)
    if all(o.status == "applied" for o in outcomes):
        return "applied", out
    return ",".join(o.code or o.status for o in outcomes), out


def _recorded(result: tuple[str, Any]) -> bool:
    """Whether the ledger recorded the result under its key (applied or rejected), so a
    retry must replay it; invalid requests and conflicts burn no key."""
    if result[0] == "applied":
        return True
    if isinstance(result[1], LedgerError):
        return getattr(result[1], "replayed", None) is not None
    return any(o.status in ("applied", "rejected") for o in _outcomes(result[1]))


class LedgerInvariants(RuleBasedStateMachine):
    """Subclass it, open your accounts in ``setup_books`` and add rules that run your
    flows through ``self.books``; register each write with :meth:`remember`.

    After every step it checks: every asset sums to zero over all accounts; no
    account is below its minimum or above its maximum; every remembered request,
    sent again, gets its first result back (replayed, nothing applied twice); the
    balances read model, caught up from the log, equals the store.
    """

    #: Options for :func:`memory_ledger` (e.g. ``{"risk": policy}``).
    ledger_options: dict[str, Any] = {}  # noqa: RUF012 - read-only class default

    def __init__(self) -> None:
        super().__init__()
        self.books = memory_ledger(**self.ledger_options)
        self.accounts: list[str] = []
        #: Each watched account's bounds when opened (the invariant reads the current ones).
        self.bounds: dict[str, tuple[Decimal | None, Decimal | None]] = {}
        self.requests: dict[str, tuple[Callable[[], Any], str]] = {}
        self.runner = ProjectionRunner.for_ledger(self.books, [BalancesView()])
        self.setup_books()

    def setup_books(self) -> None:
        """Open accounts (with :meth:`open_account`) and fund them. Override."""

    def open_account(
        self,
        account: str,
        asset: str,
        *,
        min_balance: str | None = None,
        max_balance: str | None = None,
        **options: Any,
    ) -> None:
        """Open an account the invariants will watch."""
        self.books.open_account(
            account, asset, min_balance=min_balance, max_balance=max_balance, **options
        )
        self.accounts.append(account)
        self.bounds[account] = (
            None if min_balance is None else Decimal(min_balance),
            None if max_balance is None else Decimal(max_balance),
        )

    def remember(self, key: str, call: Callable[[], Any]) -> tuple[str, Any]:
        """Run a write (a zero-argument callable using ``key``) and remember it, so
        the machine can send it again later and check it replays. Returns
        ("applied", result) or (error code, error); a returned outcome that did not
        apply (``books.submit``) gives its code, and a list of outcomes that did not
        all apply gives their codes joined by commas."""
        result = _result(call)
        if _recorded(result):
            self.requests[key] = (call, result[0])
        return result

    def teardown(self) -> None:
        self.runner.close()
        self.books.close()

    @invariant()
    def every_asset_sums_to_zero_and_rules_hold(self) -> None:
        totals: dict[str, Decimal] = {}
        for name in self.accounts:
            b = self.books.balance(name)
            signed = b.posted if b.normal == "debit" else b.posted.copy_negate()
            totals[b.asset] = EXACT.add(totals.get(b.asset, Decimal(0)), signed)
            # The account's rules as they are now (change_limits may have moved them).
            low, high = b.min_balance, b.max_balance
            assert low is None or b.available >= low, f"{name} below its minimum: {b}"
            top = EXACT.add(b.posted, b.pending_in)
            assert high is None or top <= high, f"{name} above its max: {b}"
        assert all(total == 0 for total in totals.values()), f"assets do not sum to zero: {totals}"

    @invariant()
    def remembered_requests_replay(self) -> None:
        for key, (call, first) in list(self.requests.items())[-5:]:
            again, result = _result(call)
            assert again == first, f"{key}: first {first}, now {again}"
            for outcome in _outcomes(result):
                assert outcome.status != "applied" or outcome.replayed, f"{key} was applied again"

    @invariant()
    def read_model_equals_store(self) -> None:
        self.runner.catch_up()
        with self.runner.views.snapshot() as w:
            for name in self.accounts:
                row = BalancesView.balance(w, name)
                b = self.books.balance(name)
                assert row is not None, f"{name} missing from the read model"
                assert (row.posted, row.pending_out, row.pending_in) == (
                    b.posted,
                    b.pending_out,
                    b.pending_in,
                ), f"read model of {name} differs from the store"

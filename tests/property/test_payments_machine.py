"""A hypothesis state machine mixes every payment flow (ledger.payments) with retries,
reused keys, concurrent duplicate requests from two ledger objects, a risk policy and
the clock moving on, against a plain model of balances, holds, requests and
refundable amounts. After every step each balance equals the model's and every
currency sums to zero; at the end the audit is clean."""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from ledger import CommandRejected, Ledger, LedgerError
from ledger import payments as pay
from ledger.projections.audit import audit
from ledger.risk import RiskCheck
from tests.conftest import require_postgres, reset_postgres
from tests.property.test_ledger_machine import MAccount, Model

START = datetime(2026, 5, 1, tzinfo=UTC)
WALLETS = ["w0", "w1", "w2", "w3"]
P2P_LIMIT = 4000  # minor units: the risk policy vetoes P2P payments above 40.00
SUBSCRIPTIONS = {"s1": 999, "s2": 500}
RATES = ["0.9", "1.1", "0.923456"]
FX = {"USD": "fxu", "EUR": "fxe"}


def usd(minor: int) -> str:
    return str(Decimal(minor).scaleb(-2))


def policy(check: RiskCheck) -> str | None:
    if getattr(check.command, "metadata", {}).get("flow") != "p2p":
        return None
    largest = max(Decimal(amount) for _, amount, _ in check.legs)
    return "over the P2P limit" if largest > Decimal(P2P_LIMIT).scaleb(-2) else None


@dataclass
class MHold:
    legs: list[tuple[str, int]]
    status: str = "pending"
    expires: datetime | None = None


@dataclass
class MCharge:
    legs: list[tuple[str, int]]  # customer debit first, then merchant, then fee
    remaining: list[int]


Call = Callable[[], Any]


class PaymentsMachine(RuleBasedStateMachine):
    url: str = ""

    holds = Bundle("holds")
    auths = Bundle("auths")
    requests = Bundle("requests")
    charges = Bundle("charges")

    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.books = Ledger.open(self.url, clock=lambda: self.now, risk=policy)
        self.twin = Ledger.open(self.url, clock=lambda: self.now, risk=policy)
        self.model = Model()
        self.m_holds: dict[uuid.UUID, MHold] = {}
        self.m_requests: dict[uuid.UUID, tuple[str, str, int, str]] = {}
        self.m_charges: dict[uuid.UUID, MCharge] = {}
        self.done: dict[str, tuple[Call, str]] = {}
        self.sends: list[tuple[str, str, str, int]] = []
        self.subscribers: dict[str, tuple[str, str]] = {}
        self.counter = 0

    def teardown(self) -> None:
        try:
            report = audit(self.books.store)
            assert report.clean, report.findings
        finally:
            self.books.close()
            self.twin.close()

    # -- helpers ------------------------------------------------------------------------------

    def key(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    @staticmethod
    def run(call: Call) -> tuple[str, Any]:
        """("ok", outcome) or (error code, error)."""
        try:
            return "ok", call()
        except LedgerError as e:
            return e.code, e

    def do(self, key: str, call: Call, expected: str) -> Any:
        got, result = self.run(call)
        assert got == expected, (key, got, expected, result)
        if expected == "ok" or isinstance(result, CommandRejected):
            self.done[key] = (call, expected)
        return result

    def apply(self, legs: list[tuple[str, int]], *, pending: bool = False, sign: int = 1) -> str:
        code = self.model.apply(legs, pending=pending, sign=sign)
        return code or "ok"

    def p2p_veto(self, legs: list[tuple[str, int]]) -> bool:
        return max(m for _, m in legs) > P2P_LIMIT

    # -- setup --------------------------------------------------------------------------------

    @initialize(funds=st.lists(st.integers(0, 9000), min_size=4, max_size=4))
    def setup(self, funds: list[int]) -> None:
        opened = [
            ("bank", "USD", "debit", None),
            ("fees", "USD", "credit", None),
            ("fxu", "USD", "debit", None),
            ("fxe", "EUR", "debit", None),
            ("shop", "USD", "credit", 0),
            ("e0", "EUR", "credit", 0),
        ] + [(w, "USD", "credit", 0) for w in WALLETS]
        for name, asset, normal, low in opened:
            self.books.open_account(name, asset, normal=normal, min_balance=low)  # type: ignore[arg-type]
            self.model.accounts[name] = MAccount(asset, 1 if normal == "debit" else -1, low, None)
        for wallet, amount in zip(WALLETS, funds, strict=True):
            if amount:
                self.books.transfer(
                    f"fund-{wallet}", debit="bank", credit=wallet, amount=usd(amount), asset="USD"
                )
                assert self.apply([("bank", amount), (wallet, -amount)]) == "ok"

    # -- P2P ----------------------------------------------------------------------------------

    @rule(
        src=st.sampled_from(WALLETS),
        dst=st.sampled_from(WALLETS),
        amount=st.integers(1, 6000),
        fee=st.sampled_from([0, 0, 25]),
    )
    def send_instant(self, src: str, dst: str, amount: int, fee: int) -> None:
        assume(src != dst)
        key = self.key("p2p")
        legs = [(src, amount + fee), (dst, -amount)] + ([("fees", -fee)] if fee else [])

        def call() -> Any:
            return pay.send(
                self.books,
                key,
                sender=src,
                recipient=dst,
                amount=usd(amount),
                asset="USD",
                fee=usd(fee) if fee else None,
                fee_account="fees",
                note="n",
                visibility="friends",
            )

        expected = "vetoed" if self.p2p_veto(legs) else self.apply(legs)
        self.do(key, call, expected)
        self.sends.append((key, src, dst, amount))

    @rule(
        target=holds,
        src=st.sampled_from(WALLETS),
        dst=st.sampled_from(WALLETS),
        amount=st.integers(1, 5000),
    )
    def send_standard(self, src: str, dst: str, amount: int) -> Any:
        assume(src != dst)
        key = self.key("std")
        legs = [(src, amount), (dst, -amount)]

        def call() -> Any:
            return pay.send(
                self.books,
                key,
                sender=src,
                recipient=dst,
                amount=usd(amount),
                asset="USD",
                mode="standard",
            )

        expected = "vetoed" if self.p2p_veto(legs) else self.apply(legs, pending=True)
        out = self.do(key, call, expected)
        if expected != "ok":
            return uuid.uuid5(uuid.NAMESPACE_URL, key)  # an id no hold has
        self.m_holds[out.entry_id] = MHold(legs)
        return out.entry_id

    @rule(hold=holds, settle=st.booleans())
    def resolve_hold(self, hold: uuid.UUID, settle: bool) -> None:
        """Settle or cancel a standard P2P payment, a bank transfer or a payout."""
        key = self.key("resolve")
        state = self.m_holds.get(hold)
        if settle:
            call: Call = lambda: pay.confirm_bank_transfer(self.books, key, hold)  # noqa: E731
        else:
            call = lambda: pay.fail_bank_transfer(self.books, key, hold)  # noqa: E731
        if state is None:
            expected = "entry_not_found"
        elif settle and state.status == "expired":
            expected = "hold_expired"
        elif state.status != "pending":
            expected = "hold_not_pending"
        elif settle and state.expires is not None and state.expires <= self.now:
            expected = "hold_expired"
        else:
            assert self.apply(state.legs, pending=True, sign=-1) == "ok"
            if settle:
                assert self.apply(state.legs) == "ok"
            state.status = "posted" if settle else "voided"
            expected = "ok"
        self.do(key, call, expected)

    # -- requests ------------------------------------------------------------------------------

    @rule(
        target=requests,
        requester=st.sampled_from(WALLETS),
        payer=st.sampled_from(WALLETS),
        amount=st.integers(1, 3000),
    )
    def request(self, requester: str, payer: str, amount: int) -> Any:
        assume(requester != payer)
        key = self.key("req")
        out = self.do(
            key,
            lambda: pay.request_money(
                self.books, key, requester=requester, payer=payer, amount=usd(amount), asset="USD"
            ),
            "ok",
        )
        self.m_requests[out.entry_id] = (requester, payer, amount, "open")
        return out.entry_id

    @rule(request=requests, accept=st.booleans())
    def answer(self, request: uuid.UUID, accept: bool) -> None:
        key = self.key("answer")
        requester, payer, amount, status = self.m_requests[request]
        if accept:
            call: Call = lambda: pay.accept_request(self.books, key, request)  # noqa: E731
        else:
            call = lambda: pay.decline_request(self.books, key, request)  # noqa: E731
        if status != "open":
            expected = "request_not_open"
        elif accept:
            expected = self.apply([(payer, amount), (requester, -amount)])
        else:
            expected = "ok"
        if expected == "ok":
            self.m_requests[request] = (requester, payer, amount, "paid" if accept else "declined")
        self.do(key, call, expected)

    @rule(
        payers=st.lists(st.sampled_from(WALLETS[1:]), min_size=1, max_size=3, unique=True),
        amount=st.integers(1, 5000),
    )
    def split(self, payers: list[str], amount: int) -> None:
        key = self.key("split")
        result = self.do(
            key,
            lambda: pay.split_bill(
                self.books, key, requester="w0", payers=payers, amount=usd(amount), asset="USD"
            ),
            "ok",
        )
        shares = pay.split_shares(amount, len(payers) + 1)
        assert sum(shares) == amount
        asked = [(p, m) for p, m in zip(payers, shares, strict=False) if m]
        assert [(p, s) for p, s, _ in result.requests] == [(p, Decimal(usd(m))) for p, m in asked]
        for (payer, _, request_id), (_, expected) in zip(result.requests, asked, strict=True):
            self.m_requests[request_id] = ("w0", payer, expected, "open")

    # -- bank, cards, payouts ----------------------------------------------------------------

    @rule(
        target=holds,
        wallet=st.sampled_from(WALLETS),
        amount=st.integers(1, 5000),
        deposit=st.booleans(),
    )
    def bank_transfer(self, wallet: str, amount: int, deposit: bool) -> Any:
        key = self.key("bank")
        if deposit:
            legs = [("bank", amount), (wallet, -amount)]

            def call():
                return pay.start_deposit(
                    self.books, key, wallet=wallet, rail="bank", amount=usd(amount), asset="USD"
                )
        else:
            legs = [(wallet, amount), ("bank", -amount)]

            def call():
                return pay.start_withdrawal(
                    self.books, key, wallet=wallet, rail="bank", amount=usd(amount), asset="USD"
                )

        expected = self.apply(legs, pending=True)
        out = self.do(key, call, expected)
        if expected != "ok":
            return uuid.uuid5(uuid.NAMESPACE_URL, key)
        self.m_holds[out.entry_id] = MHold(legs)
        return out.entry_id

    @rule(
        target=auths,
        card=st.sampled_from(WALLETS),
        amount=st.integers(1, 5000),
        ttl=st.integers(1, 3),
    )
    def authorize(self, card: str, amount: int, ttl: int) -> Any:
        key = self.key("auth")
        legs = [(card, amount), ("shop", -amount)]
        expires = self.now + timedelta(hours=ttl)
        expected = self.apply(legs, pending=True)
        out = self.do(
            key,
            lambda: pay.authorize_card(
                self.books,
                key,
                card=card,
                merchant="shop",
                amount=usd(amount),
                asset="USD",
                expires_at=expires,
            ),
            expected,
        )
        if expected != "ok":
            return uuid.uuid5(uuid.NAMESPACE_URL, key)
        self.m_holds[out.entry_id] = MHold(legs, expires=expires)
        return out.entry_id

    @rule(hold=auths, part=st.one_of(st.none(), st.integers(1, 5000)))
    def capture_or_release(self, hold: uuid.UUID, part: int | None) -> None:
        """Capture part of an authorization, or release it (``part=None``)."""
        key = self.key("capture")
        state = self.m_holds.get(hold)
        if part is None:
            call: Call = lambda: pay.release_card(self.books, key, hold)  # noqa: E731
        else:
            call = lambda: pay.capture_card(self.books, key, hold, usd(part))  # noqa: E731
        if state is None:
            self.do(key, call, "entry_not_found")
            return
        assert state.expires is not None
        card, held = state.legs[0]
        if part is not None and state.status == "expired":  # swept: still the real cause
            expected = "hold_expired"
        elif state.status != "pending":
            expected = "hold_not_pending"
        elif part is not None and state.expires <= self.now:
            expected = "hold_expired"
        elif part is not None and part > held:
            expected = "exceeds_hold"
        else:
            assert self.apply(state.legs, pending=True, sign=-1) == "ok"
            if part is not None:
                assert self.apply([(card, part), ("shop", -part)]) == "ok"
            state.status = "voided" if part is None else "posted"
            expected = "ok"
        self.do(key, call, expected)

    @rule(hours=st.integers(1, 3))
    def time_passes(self, hours: int) -> None:
        self.now += timedelta(hours=hours)
        outcomes = self.books.expire_due()
        due = [
            h
            for h, s in self.m_holds.items()
            if s.status == "pending" and s.expires is not None and s.expires <= self.now
        ]
        released = sorted(str(o.entry_id) for o in outcomes if o.ok and o.kind == "expire")
        assert len(released) == len(due) == len(outcomes)
        for hold in due:
            assert self.apply(self.m_holds[hold].legs, pending=True, sign=-1) == "ok"
            self.m_holds[hold].status = "expired"

    @rule(target=holds, whole=st.booleans(), amount=st.integers(1, 3000))
    def payout(self, whole: bool, amount: int) -> Any:
        key = self.key("payout")
        shop = self.model.accounts["shop"]
        if whole:
            amount = shop.posted - shop.out
            if amount <= 0:
                got, _ = self.run(lambda: pay.payout(self.books, key, merchant="shop", rail="bank"))
                assert got == "invalid_amount"
                return uuid.uuid5(uuid.NAMESPACE_URL, key)
        legs = [("shop", amount), ("bank", -amount)]
        expected = self.apply(legs, pending=True)
        out = self.do(
            key,
            lambda: pay.payout(
                self.books, key, merchant="shop", rail="bank", amount=None if whole else usd(amount)
            ),
            expected,
        )
        if expected != "ok":
            return uuid.uuid5(uuid.NAMESPACE_URL, key)
        self.m_holds[out.entry_id] = MHold(legs)
        return out.entry_id

    # -- merchants ----------------------------------------------------------------------------

    @rule(
        target=charges,
        customer=st.sampled_from(WALLETS),
        amount=st.integers(1, 4000),
        fee=st.sampled_from([0, 30]),
    )
    def charge(self, customer: str, amount: int, fee: int) -> Any:
        fee = min(fee, amount)
        key = self.key("charge")
        legs = [(customer, amount)]
        if amount - fee:
            legs.append(("shop", -(amount - fee)))
        if fee:
            legs.append(("fees", -fee))
        expected = self.apply(legs)
        out = self.do(
            key,
            lambda: pay.charge(
                self.books,
                key,
                customer=customer,
                merchant="shop",
                amount=usd(amount),
                asset="USD",
                fee=usd(fee),
                platform="fees",
            ),
            expected,
        )
        if expected != "ok":
            return uuid.uuid5(uuid.NAMESPACE_URL, key)
        self.m_charges[out.entry_id] = MCharge(legs, [abs(m) for _, m in legs])
        return out.entry_id

    @rule(charge=charges, amount=st.one_of(st.none(), st.integers(1, 4000)))
    def refund(self, charge: uuid.UUID, amount: int | None) -> None:
        key = self.key("refund")
        state = self.m_charges.get(charge)

        def call():
            return pay.refund(
                self.books, key, charge, amount=None if amount is None else usd(amount)
            )

        if state is None:
            expected = "entry_not_found"
            self.do(key, call, expected)
            return
        rest = list(state.remaining)
        if amount is None:
            give = [
                (name, -m // abs(m) * r) for (name, m), r in zip(state.legs, rest, strict=True) if r
            ]
            new_rest = [0] * len(rest)
            expected = "entry_not_reversible" if not give else "ok"
        elif amount > rest[0]:
            expected, give, new_rest = "entry_not_reversible", [], rest
        else:
            give, need, new_rest = [(state.legs[0][0], -amount)], amount, [rest[0] - amount]
            for (name, _), r in zip(state.legs[1:], rest[1:], strict=True):
                take = min(need, r)
                if take:
                    give.append((name, take))
                need -= take
                new_rest.append(r - take)
            expected = "ok"
        if expected == "ok":
            expected = self.apply(give)
        if expected == "ok":
            state.remaining = new_rest
        self.do(key, call, expected)

    @rule(
        sub=st.sampled_from(sorted(SUBSCRIPTIONS)),
        period=st.sampled_from(["2026-05", "2026-06"]),
        customer=st.sampled_from(WALLETS),
    )
    def subscription(self, sub: str, period: str, customer: str) -> None:
        key = pay.subscription_key(sub, period)
        amount = SUBSCRIPTIONS[sub]

        def call() -> Any:
            return pay.charge_subscription(
                self.books,
                subscription=sub,
                period=period,
                customer=customer,
                merchant="shop",
                amount=usd(amount),
                asset="USD",
            )

        first = self.subscribers.get(key)
        if first is not None:
            got, result = self.run(call)
            if customer != first[0]:
                assert got == "idempotency_conflict"
            else:
                assert got == first[1]
                assert getattr(result, "replayed", False)
            return
        expected = self.apply([(customer, amount), ("shop", -amount)])
        self.do(key, call, expected)
        self.subscribers[key] = (customer, expected)

    # -- FX -----------------------------------------------------------------------------------

    @rule(payer=st.sampled_from(WALLETS), amount=st.integers(1, 3000), rate=st.sampled_from(RATES))
    def fx(self, payer: str, amount: int, rate: str) -> None:
        key = self.key("fx")
        received = int((Decimal(amount) * Decimal(rate)).quantize(Decimal(1), rounding=ROUND_DOWN))

        def call():
            return pay.fx_pay(
                self.books,
                key,
                payer=payer,
                payee="e0",
                amount=usd(amount),
                pay_asset="USD",
                receive_asset="EUR",
                rate=rate,
                fx_accounts=FX,
            )

        if received == 0:
            got, _ = self.run(call)
            assert got == "invalid_amount"
            return
        legs = [(payer, amount), ("fxu", -amount), ("fxe", received), ("e0", -received)]
        self.do(key, call, self.apply(legs))

    # -- retries and duplicates ---------------------------------------------------------------

    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        if not self.done:
            return
        key = data.draw(st.sampled_from(sorted(self.done)))
        call, expected = self.done[key]
        got, result = self.run(call)
        assert got == expected, (key, got, expected)
        if isinstance(result, pay.Split):
            assert result.outcome.replayed
        elif got == "ok" or isinstance(result, CommandRejected):
            assert result.replayed

    @rule(data=st.data())
    def reuse_key(self, data: st.DataObject) -> None:
        if not self.sends:
            return
        key, src, dst, amount = data.draw(st.sampled_from(self.sends))
        got, _ = self.run(
            lambda: pay.send(
                self.books, key, sender=src, recipient=dst, amount=usd(amount + 1), asset="USD"
            )
        )
        assert got == "idempotency_conflict"

    @rule(src=st.sampled_from(WALLETS), dst=st.sampled_from(WALLETS), amount=st.integers(1, 3000))
    def concurrent_duplicates(self, src: str, dst: str, amount: int) -> None:
        """The same request sent at once through two ledger objects applies once."""
        assume(src != dst)
        key = self.key("dup")
        results: list[tuple[str, Any]] = []
        gate = threading.Barrier(2)

        def go(books: Ledger) -> None:
            gate.wait()
            results.append(
                self.run(
                    lambda: pay.send(
                        books, key, sender=src, recipient=dst, amount=usd(amount), asset="USD"
                    )
                )
            )

        threads = [threading.Thread(target=go, args=(b,)) for b in (self.books, self.twin)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        expected = self.apply([(src, amount), (dst, -amount)])
        assert [code for code, _ in results] == [expected, expected], results
        fresh = [r for _, r in results if not getattr(r, "replayed", False)]
        assert len(fresh) == 1, results
        if expected == "ok":
            assert results[0][1].entry_id == results[1][1].entry_id

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def balances_equal_model_and_sum_to_zero(self) -> None:
        totals: dict[str, int] = {}
        for name, acct in self.model.accounts.items():
            b = self.books.balance(name)
            got = (
                int(b.posted.scaleb(2)),
                int(b.pending_out.scaleb(2)),
                int(b.pending_in.scaleb(2)),
            )
            assert got == (acct.posted, acct.out, acct.inn), (name, got, acct)
            if acct.low is not None:
                assert acct.posted - acct.out >= acct.low
            totals[acct.asset] = totals.get(acct.asset, 0) + acct.sign * acct.posted
        assert all(total == 0 for total in totals.values()), totals
        for state in self.m_charges.values():
            assert sum(state.remaining[1:]) == state.remaining[0]


def _settings(default: int, steps: int) -> settings:
    return settings(
        max_examples=int(os.environ.get("LEDGER_MACHINE_EXAMPLES", str(default))),
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


@pytest.mark.postgres
def test_payments_machine_on_postgres() -> None:
    url = require_postgres()

    class Fresh(PaymentsMachine):
        def __init__(self) -> None:
            Ledger.open(url).close()
            reset_postgres(url)
            type(self).url = url
            super().__init__()

    Fresh.TestCase.settings = _settings(30, 40)
    Fresh.TestCase().runTest()


def test_payments_machine_on_sqlite() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        counter = [0]

        class Fresh(PaymentsMachine):
            def __init__(self) -> None:
                counter[0] += 1
                type(self).url = f"sqlite:///{tmp}/run{counter[0]}.db"
                super().__init__()

        Fresh.TestCase.settings = _settings(30, 40)
        Fresh.TestCase().runTest()

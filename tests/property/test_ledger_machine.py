"""A hypothesis state machine drives random commands against the real ledger (SQLite
and PostgreSQL) and a plain in-memory model, and checks after every step that they
agree, that every currency sums to zero, that no balance rule is broken, that each
key applies at most once with a stable outcome, and that reopening the store changes
nothing."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
)

from ledger import Ledger, Outcome
from ledger.commands import AtomicBatch, LegInput, PostEntry
from ledger.commands.builders import build
from ledger.model import entry_id_for_key
from tests.conftest import require_postgres, reset_postgres

SCALES = {"USD": 2, "EUR": 2, "PTS": 3}
ACCOUNTS = ["a", "b", "c", "d", "e"]  # USD wallets opened at the start
NAMES = [*ACCOUNTS, "bank:USD", "x", "ghost"]  # x holds EUR; ghost is never opened
ASSETS = ["USD", "USD", "USD", "EUR"]
START = datetime(2026, 3, 1, tzinfo=UTC)


def dec(minor: int, asset: str) -> str:
    return str(Decimal(minor).scaleb(-SCALES[asset]))


@dataclass
class MAccount:
    asset: str
    sign: int  # +1 debit-normal, -1 credit-normal
    low: int | None
    high: int | None
    posted: int = 0
    out: int = 0
    inn: int = 0


@dataclass
class MHold:
    legs: list[tuple[str, int]]
    status: str = "pending"
    expires: datetime | None = None


@dataclass
class Model:
    """The plain model: dictionaries and integers, no storage, no concurrency."""

    accounts: dict[str, MAccount] = field(default_factory=dict)
    holds: dict[str, MHold] = field(default_factory=dict)
    remaining: dict[str, list[tuple[str, int, int]]] = field(default_factory=dict)
    outcomes: dict[str, tuple[Any, tuple[str, str | None]]] = field(default_factory=dict)

    def apply(self, legs: list[tuple[str, int]], *, pending: bool, sign: int = 1) -> str | None:
        """Apply legs to copies; return a rejection code or commit them."""
        touched: dict[str, MAccount] = {}
        for name, amount in legs:
            acct = touched.get(name) or (
                MAccount(**vars(self.accounts[name])) if name in self.accounts else None
            )
            if acct is None:
                return "unknown_account"
            oriented = acct.sign * amount
            if not pending:
                acct.posted += oriented * sign
            elif oriented < 0:
                acct.out += -oriented * sign
            else:
                acct.inn += oriented * sign
            touched[name] = acct
        for acct in touched.values():
            if acct.low is not None and acct.posted - acct.out < acct.low:
                return "balance_rule_violated"
            if acct.high is not None and acct.posted + acct.inn > acct.high:
                return "balance_rule_violated"
        self.accounts.update(touched)
        return None


class LedgerMachine(RuleBasedStateMachine):
    """Random commands against the ledger and the model."""

    url: str = ""

    holds = Bundle("holds")
    postings = Bundle("postings")

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.now = START
        self.books = Ledger.open(self.url, clock=lambda: self.now)
        self.counter = 0
        self.requests: dict[str, Any] = {}

    def teardown(self) -> None:
        self.books.close()

    def key(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    def submit(self, key: str, command: Any, expected: tuple[str, str | None]) -> Outcome:
        outcome = self.books.submit(command)
        assert (outcome.status, outcome.code) == expected, (key, outcome, expected)
        if outcome.status in ("applied", "rejected"):
            self.model.outcomes[key] = (command, expected)
        return outcome

    @initialize(
        rules=st.lists(
            st.tuples(
                st.sampled_from([None, 0, 0, -500]),
                st.sampled_from([None, None, 20000]),
                st.sampled_from(["credit", "credit", "debit"]),
            ),
            min_size=len(ACCOUNTS),
            max_size=len(ACCOUNTS),
        ),
        funds=st.lists(st.integers(0, 5000), min_size=len(ACCOUNTS), max_size=len(ACCOUNTS)),
    )
    def setup(self, rules: list[tuple[int | None, int | None, str]], funds: list[int]) -> None:
        self.books.declare_asset("PTS", 3)
        for asset in SCALES:
            self.books.open_account(f"bank:{asset}", asset, normal="debit")
            self.model.accounts[f"bank:{asset}"] = MAccount(asset, 1, None, None)
        self.books.open_account("x", "EUR")
        self.model.accounts["x"] = MAccount("EUR", -1, None, None)
        for name, (floor, ceiling, normal), fund in zip(ACCOUNTS, rules, funds, strict=True):
            self.books.open_account(
                name,
                "USD",
                normal=normal,  # type: ignore[arg-type]
                min_balance=None if floor is None else dec(floor, "USD"),
                max_balance=None if ceiling is None else dec(ceiling, "USD"),
            )
            sign = 1 if normal == "debit" else -1
            self.model.accounts[name] = MAccount("USD", sign, floor, ceiling)
            if fund:
                # fund in the direction that raises this account's balance
                legs = (
                    [("bank:USD", fund), (name, -fund)]
                    if sign < 0
                    else [(name, fund), ("bank:USD", -fund)]
                )
                key = self.key("fund")
                expected = self._expect(legs, "USD", pending=False)
                self.submit(key, PostEntry(key=key, legs=self._legs(legs, "USD")), expected)

    # -- accounts ---------------------------------------------------------------------------

    @rule(
        name=st.sampled_from(["f", "g", "a"]),
        asset=st.sampled_from(sorted(SCALES)),
        floor=st.sampled_from([None, 0, -500]),
        ceiling=st.sampled_from([None, None, 5000]),
        normal=st.sampled_from(["credit", "debit"]),
    )
    def open_account(
        self, name: str, asset: str, floor: int | None, ceiling: int | None, normal: str
    ) -> None:
        from ledger.commands import OpenAccount

        account = name
        key = self.key("open")
        cmd = build(
            OpenAccount,
            key=key,
            account=account,
            asset=asset,
            normal=normal,
            min_balance=None if floor is None else Decimal(dec(floor, asset)),
            max_balance=None if ceiling is None else Decimal(dec(ceiling, asset)),
        )
        if account in self.model.accounts:
            self.submit(key, cmd, ("rejected", "account_exists"))
            return
        self.submit(key, cmd, ("applied", None))
        self.model.accounts[account] = MAccount(
            asset, 1 if normal == "debit" else -1, floor, ceiling
        )

    # -- postings ---------------------------------------------------------------------------

    def _legs(self, legs: list[tuple[str, int]], asset: str) -> tuple[LegInput, ...]:
        return tuple(
            LegInput(account=a, amount=Decimal(dec(m, asset)), asset=asset) for a, m in legs
        )

    def _expect(
        self, legs: list[tuple[str, int]], asset: str, *, pending: bool
    ) -> tuple[str, str | None]:
        for name, _ in legs:
            acct = self.model.accounts.get(name)
            if acct is None:
                return ("rejected", "unknown_account")
            if acct.asset != asset:
                return ("rejected", "asset_mismatch")
        code = self.model.apply(legs, pending=pending)
        return ("rejected", code) if code else ("applied", None)

    @rule(
        target=postings,
        src=st.sampled_from(NAMES),
        dst=st.sampled_from(NAMES),
        asset=st.sampled_from(ASSETS),
        amount=st.integers(1, 3000),
    )
    def transfer(self, src: str, dst: str, asset: str, amount: int) -> Any:
        legs = [(src, amount), (dst, -amount)]
        key = self.key("t")
        cmd = PostEntry(key=key, legs=self._legs(legs, asset))
        expected = self._expect(legs, asset, pending=False)
        self.submit(key, cmd, expected)
        if expected[0] == "applied":
            self.model.remaining[key] = [(a, m, abs(m)) for a, m in legs]
            return key
        return multiple()

    @rule(
        a=st.sampled_from(ACCOUNTS),
        b=st.sampled_from(ACCOUNTS),
        c=st.sampled_from(NAMES),
        x=st.integers(1, 900),
        y=st.integers(1, 900),
    )
    def three_legs(self, a: str, b: str, c: str, x: int, y: int) -> None:
        legs = [(a, x), (b, y), (c, -(x + y))]
        key = self.key("m")
        self.submit(
            key,
            PostEntry(key=key, legs=self._legs(legs, "USD")),
            self._expect(legs, "USD", pending=False),
        )

    @rule(
        pairs=st.lists(
            st.tuples(st.sampled_from(NAMES), st.sampled_from(ACCOUNTS), st.integers(1, 2000)),
            min_size=2,
            max_size=3,
        ),
        atomic=st.booleans(),
    )
    def batch(self, pairs: list[tuple[str, str, int]], atomic: bool) -> None:
        commands = []
        expectations = []
        saved = {k: MAccount(**vars(v)) for k, v in self.model.accounts.items()}
        for src, dst, amount in pairs:
            legs = [(src, amount), (dst, -amount)]
            key = self.key("g")
            commands.append((key, PostEntry(key=key, legs=self._legs(legs, "USD"))))
            expectations.append(self._expect(legs, "USD", pending=False))
        if not atomic:
            outcomes = self.books.submit_many([c for _, c in commands])
            for (key, cmd), outcome, expected in zip(commands, outcomes, expectations, strict=True):
                assert (outcome.status, outcome.code) == expected
                self.model.outcomes[key] = (cmd, expected)
            return
        key = self.key("atomic")
        command = AtomicBatch(key=key, commands=tuple(c for _, c in commands))
        failed = next((e for e in expectations if e[0] != "applied"), None)
        if failed is not None:
            self.model.accounts = saved  # all or nothing
            self.submit(key, command, failed)
        else:
            self.submit(key, command, ("applied", None))

    # -- holds ------------------------------------------------------------------------------

    @rule(
        target=holds,
        src=st.sampled_from(ACCOUNTS),
        dst=st.sampled_from(NAMES),
        amount=st.integers(1, 2000),
        ttl=st.sampled_from([None, 1, 5]),
    )
    def hold(self, src: str, dst: str, amount: int, ttl: int | None) -> Any:
        from ledger.commands import PlaceHold

        legs = [(src, amount), (dst, -amount)]
        key = self.key("h")
        expires = None if ttl is None else self.now + timedelta(hours=ttl)
        cmd = PlaceHold(key=key, legs=self._legs(legs, "USD"), expires_at=expires)
        expected = self._expect(legs, "USD", pending=True)
        self.submit(key, cmd, expected)
        if expected[0] == "applied":
            self.model.holds[key] = MHold(legs, expires=expires)
            return key
        return multiple()

    @rule(hold=consumes(holds), part=st.sampled_from([None, 1, 2]))
    def capture(self, hold: str, part: int | None) -> None:
        from ledger.commands import PostHold

        state = self.model.holds[hold]
        key = self.key("cap")
        share = max(1, abs(state.legs[0][1]) // (part + 1)) if part else 0
        legs = (
            state.legs if part is None else [(a, share if m > 0 else -share) for a, m in state.legs]
        )
        given = None if part is None else self._legs(legs, "USD")
        cmd = PostHold(key=key, hold_id=entry_id_for_key(hold), legs=given)
        if state.status == "expired":  # released by the sweeper: still the real cause
            self.submit(key, cmd, ("rejected", "hold_expired"))
            return
        if state.status != "pending":
            self.submit(key, cmd, ("rejected", "hold_not_pending"))
            return
        if state.expires is not None and state.expires <= self.now:
            self.submit(key, cmd, ("rejected", "hold_expired"))
            return
        saved = {k: MAccount(**vars(v)) for k, v in self.model.accounts.items()}
        assert self.model.apply(state.legs, pending=True, sign=-1) is None
        code = self.model.apply(legs, pending=False)
        if code:
            self.model.accounts = saved
            self.submit(key, cmd, ("rejected", code))
            return
        self.submit(key, cmd, ("applied", None))
        state.status = "posted"
        self.model.remaining[key] = [(a, m, abs(m)) for a, m in legs]

    @rule(hold=holds)
    def void(self, hold: str) -> None:
        from ledger.commands import VoidHold

        state = self.model.holds[hold]
        key = self.key("void")
        cmd = VoidHold(key=key, hold_id=entry_id_for_key(hold))
        if state.status != "pending":
            self.submit(key, cmd, ("rejected", "hold_not_pending"))
            return
        assert self.model.apply(state.legs, pending=True, sign=-1) is None
        self.submit(key, cmd, ("applied", None))
        state.status = "voided"

    @rule(hours=st.integers(1, 4))
    def advance_clock_and_expire(self, hours: int) -> None:
        self.now += timedelta(hours=hours)
        outcomes = self.books.expire_due()
        due = [
            k
            for k, h in self.model.holds.items()
            if h.status == "pending" and h.expires is not None and h.expires <= self.now
        ]
        assert sorted(o.key for o in outcomes) == sorted(
            f"expire:{entry_id_for_key(k)}" for k in due
        )
        assert all(o.status == "applied" for o in outcomes)
        for k in due:
            assert self.model.apply(self.model.holds[k].legs, pending=True, sign=-1) is None
            self.model.holds[k].status = "expired"

    # -- reversals ----------------------------------------------------------------------------

    @rule(posting=postings, part=st.sampled_from([None, 2, 3]))
    def reverse(self, posting: str, part: int | None) -> None:
        from ledger.commands import ReverseEntry

        rest = self.model.remaining[posting]
        key = self.key("rev")
        if part is None:
            legs = [(a, -m // abs(m) * r) for a, m, r in rest if r]
            given = None
        else:
            legs = [(a, -(m // abs(m)) * max(1, abs(m) // part)) for a, m, _ in rest]
            asset = self.model.accounts[rest[0][0]].asset
            given = self._legs(legs, asset)
        cmd = ReverseEntry(key=key, entry_id=entry_id_for_key(posting), legs=given)
        exceeds = (
            any(abs(m) > r for (_, m), (_, _, r) in zip(legs, rest, strict=False))
            if part
            else not legs
        )
        if exceeds or not legs:
            self.submit(key, cmd, ("rejected", "entry_not_reversible"))
            return
        code = self.model.apply(legs, pending=False)
        if code:
            self.submit(key, cmd, ("rejected", code))
            return
        self.submit(key, cmd, ("applied", None))
        self.model.remaining[posting] = (
            [(a, m, r - abs(n)) for (a, m, r), (_, n) in zip(rest, legs, strict=False)]
            if part
            else [(a, m, 0) for a, m, _ in rest]
        )

    # -- idempotency and bad input ---------------------------------------------------------------

    @rule(data=st.data())
    def retry_same_request(self, data: st.DataObject) -> None:
        if not self.model.outcomes:
            return
        key = data.draw(st.sampled_from(sorted(self.model.outcomes)))
        command, expected = self.model.outcomes[key]
        outcome = self.books.submit(command)
        assert outcome.replayed
        assert (outcome.status, outcome.code) == expected

    @rule(data=st.data())
    def reuse_key_for_another_request(self, data: st.DataObject) -> None:
        keys = [k for k, (c, _) in self.model.outcomes.items() if isinstance(c, PostEntry)]
        if not keys:
            return
        key = data.draw(st.sampled_from(sorted(keys)))
        other = PostEntry(key=key, legs=self._legs([("a", 7), ("b", -7)], "USD"), description="x")
        outcome = self.books.submit(other)
        assert (outcome.status, outcome.code) == ("conflict", "idempotency_conflict")

    @rule(amount=st.sampled_from(["0.001", "0", "NaN"]))
    def bad_amount(self, amount: str) -> None:
        key = self.key("bad")
        try:
            cmd = PostEntry(
                key=key,
                legs=(
                    LegInput(account="a", amount=Decimal(amount), asset="USD"),
                    LegInput(account="bank:USD", amount=-Decimal(amount), asset="USD"),
                ),
            )
        except ValueError:
            return
        outcome = self.books.submit(cmd)
        assert outcome.status == "invalid"

    @rule()
    def reopen(self) -> None:
        before = self.snapshot()
        self.books.close()
        self.books = Ledger.open(self.url, clock=lambda: self.now)
        assert self.snapshot() == before

    # -- invariants -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
        out = {}
        for name in self.model.accounts:
            b = self.books.balance(name)
            out[name] = (b.posted, b.pending_out, b.pending_in)
        return out

    @invariant()
    def ledger_equals_model_and_currencies_sum_to_zero(self) -> None:
        totals: dict[str, int] = {}
        for name, acct in self.model.accounts.items():
            b = self.books.balance(name)
            scale = SCALES[acct.asset]
            got = (
                int(b.posted.scaleb(scale)),
                int(b.pending_out.scaleb(scale)),
                int(b.pending_in.scaleb(scale)),
            )
            assert got == (acct.posted, acct.out, acct.inn), name
            if acct.low is not None:
                assert acct.posted - acct.out >= acct.low
            if acct.high is not None:
                assert acct.posted + acct.inn <= acct.high
            totals[acct.asset] = totals.get(acct.asset, 0) + acct.sign * acct.posted
        assert all(total == 0 for total in totals.values()), totals


def test_case_01_conservation_machine_on_sqlite() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        counter = [0]

        class Fresh(LedgerMachine):
            def __init__(self) -> None:
                counter[0] += 1
                type(self).url = f"sqlite:///{tmp}/run{counter[0]}.db"
                super().__init__()

        Fresh.TestCase.settings = settings(
            max_examples=int(os.environ.get("LEDGER_MACHINE_EXAMPLES", "100")),
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        Fresh.TestCase().runTest()


@pytest.mark.postgres
def test_case_01_conservation_machine_on_postgres() -> None:
    url = require_postgres()

    class Fresh(LedgerMachine):
        def __init__(self) -> None:
            Ledger.open(url).close()
            reset_postgres(url)
            type(self).url = url
            super().__init__()

    Fresh.TestCase.settings = settings(
        max_examples=int(os.environ.get("LEDGER_MACHINE_EXAMPLES", "50")),
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    Fresh.TestCase().runTest()

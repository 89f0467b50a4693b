"""Hostile arguments against every money-moving entry point of ``ledger.payments`` and
the ``Ledger`` convenience methods: negative, zero, huge and many-digit amounts, fees
and rates; the same account on both sides; mismatched currencies; unknown, frozen and
closed accounts; odd types.

For each call: either it applies, and then it means what the flow says (a positive
amount moved from the payer, nothing else changed that the flow does not name, and
every currency still sums to zero), or it raises a typed ``LedgerError`` and every
balance and hold in the store is unchanged; a refusal of the flow's own (an
``InvalidCommand``) leaves the key unused. Checked against the store, not the return
value. A planted bug (a flow that skips its own check) makes it fail."""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from ledger import Ledger
from ledger import payments as pay
from ledger.errors import InvalidCommand, LedgerError

WALLETS = ("w:a", "w:b", "w:c")
SPECIAL = ("w:eur", "w:frozen", "w:closed", "w:nobody", "fees", "bank", "fx:USD", "fx:EUR")
ACCOUNTS = st.one_of(st.sampled_from(WALLETS), st.sampled_from(WALLETS + SPECIAL))
VALID = st.one_of(
    st.sampled_from(["1", "0.01", "2.50", "+3"]),
    st.decimals(min_value=Decimal("0.01"), max_value=Decimal(20), places=2),
)

AMOUNTS = st.one_of(
    VALID,
    VALID,
    VALID,
    st.sampled_from(
        [
            "1",
            "0.01",
            "+5",
            "0",
            "-0",
            "-5",
            "-0.01",
            "0.001",
            "1e3",
            "-1e3",
            "1_000",
            "\uff11",
            "1e300",
            "9e999999",
            "1e-19",
            "NaN",
            "Infinity",
            "-Infinity",
            " 5",
            "5 ",
            "",
            "abc",
            "9" * 40,
            "0." + "0" * 30 + "1",
            "1" * 20 + "." + "1" * 18,
        ]
    ),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.floats(allow_nan=True),
    st.none(),
    st.booleans(),
)


class Books:
    """One store for all examples (fresh keys per call), with the snapshot the checks
    compare."""

    def __init__(self) -> None:
        self.dir = tempfile.TemporaryDirectory()
        self.books = Ledger.open(f"sqlite:///{self.dir.name}/hostile.db")
        self.counter = 0
        b = self.books
        b.open_account("bank", "USD", normal="debit")
        b.open_account("bank:EUR", "EUR", normal="debit")
        b.open_account("fees", "USD")
        b.open_account("fx:USD", "USD")
        b.open_account("fx:EUR", "EUR", normal="debit")
        for name in (*WALLETS, "w:frozen", "w:closed"):
            b.open_account(name, "USD", min_balance="0")
        b.open_account("w:eur", "EUR", min_balance="0")
        for name in (*WALLETS, "w:frozen"):
            b.transfer(f"fund-{name}", debit="bank", credit=name, amount="1000", asset="USD")
        b.transfer("fund-eur", debit="bank:EUR", credit="w:eur", amount="1000", asset="EUR")
        b.freeze("freeze", "w:frozen", mode="all")
        b.close_account("close", "w:closed")
        self.charge = pay.charge(
            b, "seed-charge", customer="w:a", merchant="w:b", amount="10", asset="USD"
        )
        self.refs: dict[str, Any] = {
            "p2p hold": pay.send(
                b, "seed-p2p", sender="w:b", recipient="w:c", amount="3", asset="USD",
                mode="standard",
            ).entry_id,
            "request": pay.request_money(
                b, "seed-req", requester="w:c", payer="w:a", amount="2", asset="USD"
            ).entry_id,
            "deposit hold": pay.start_deposit(
                b, "seed-dep", wallet="w:c", rail="bank", amount="4", asset="USD"
            ).entry_id,
            "transfer": b.transfer(
                "seed-t", debit="w:a", credit="w:b", amount="1", asset="USD"
            ).entry_id,
            "unknown": uuid.UUID(int=7),
            "text": "not-a-uuid",
            "none": None,
            "number": 12345,
        }  # fmt: skip
        self.auth = pay.authorize_card(
            b,
            "seed-auth",
            card="w:a",
            merchant="w:c",
            amount="10",
            asset="USD",
            expires_at=datetime.now(UTC) + timedelta(days=30),
        )

        self.refs["charge"] = self.charge.entry_id
        self.refs["card auth"] = self.auth.entry_id

    def key(self) -> str:
        self.counter += 1
        return f"hostile-{self.counter}"

    def snapshot(self) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
        out = {}
        for name in (*WALLETS, *SPECIAL, "bank:EUR"):
            try:
                s = self.books.balance(name)
            except LedgerError:
                continue
            out[name] = (s.posted, s.pending_out, s.pending_in)
        return out


@pytest.fixture(scope="module")
def store() -> Iterator[Books]:
    books = Books()
    yield books
    books.books.close()


Call = Callable[[Ledger, str], Any]


def calls(a: str, b: str, c: str, amount: Any, fee: Any, books: Books) -> dict[str, Call]:
    """Each entry point with the drawn arguments: payer ``a``, payee ``b``, third ``c``."""
    return {
        "send": lambda L, k: pay.send(L, k, sender=a, recipient=b, amount=amount, asset="USD"),
        "send_fee": lambda L, k: pay.send(
            L, k, sender=a, recipient=b, amount=amount, asset="USD", fee=fee, fee_account=c
        ),
        "send_standard": lambda L, k: pay.send(
            L, k, sender=a, recipient=b, amount=amount, asset="USD", mode="standard"
        ),
        "request_money": lambda L, k: pay.request_money(
            L, k, requester=b, payer=a, amount=amount, asset="USD"
        ),
        "split_bill": lambda L, k: pay.split_bill(
            L, k, requester=b, payers=[a, c], amount=amount, asset="USD"
        ),
        "start_deposit": lambda L, k: pay.start_deposit(
            L, k, wallet=b, rail=a, amount=amount, asset="USD"
        ),
        "start_withdrawal": lambda L, k: pay.start_withdrawal(
            L, k, wallet=a, rail=b, amount=amount, asset="USD"
        ),
        "authorize_card": lambda L, k: pay.authorize_card(
            L,
            k,
            card=a,
            merchant=b,
            amount=amount,
            asset="USD",
            expires_at=datetime.now(UTC) + timedelta(days=1),
        ),
        "capture_card": lambda L, k: pay.capture_card(L, k, books.auth.entry_id, amount),
        "charge": lambda L, k: pay.charge(
            L, k, customer=a, merchant=b, amount=amount, asset="USD", fee=fee, platform=c
        ),
        "refund": lambda L, k: pay.refund(L, k, books.charge.entry_id, amount=amount),
        "payout": lambda L, k: pay.payout(L, k, merchant=a, rail=b, amount=amount),
        "charge_subscription": lambda L, k: pay.charge_subscription(
            L,
            subscription=k,
            period="2026-11",
            customer=a,
            merchant=b,
            amount=amount,
            asset="USD",
            fee=fee,
            platform=c,
        ),
        "fx_pay": lambda L, k: pay.fx_pay(
            L,
            k,
            payer=a,
            payee="w:eur" if b != "w:eur" else c,
            amount=amount,
            pay_asset="USD",
            receive_asset="EUR",
            rate=fee,
            fx_accounts={"USD": "fx:USD", "EUR": "fx:EUR"},
        ),
        "transfer": lambda L, k: L.transfer(k, debit=a, credit=b, amount=amount, asset="USD"),
        "post": lambda L, k: L.post(k, [(a, amount, "USD"), (b, _negated(amount), "USD")]),
        "hold": lambda L, k: L.hold(k, [(a, amount, "USD"), (b, _negated(amount), "USD")]),
    }


def _negated(amount: Any) -> Any:
    try:
        return -Decimal(str(amount))
    except Exception:
        return amount


NAMES = sorted(calls("a", "b", "c", 1, 0, None).keys())  # type: ignore[arg-type]


def _positive_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str) and (not value.isascii() or "_" in value):
        return None  # Decimal reads "1_000" and other scripts' digits; amounts are ASCII
    try:
        number = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except Exception:
        return None
    return number if number.is_finite() and number > 0 else None


def _event(text: str) -> None:
    """Count outcomes for ``--hypothesis-show-statistics`` (only inside a test)."""
    with contextlib.suppress(InvalidArgument):
        event(text)


def check(store: Books, name: str, a: str, b: str, c: str, amount: Any, fee: Any) -> None:
    books = store.books
    key = store.key()
    before = store.snapshot()
    try:
        outcome = calls(a, b, c, amount, fee, store)[name](books, key)
    except LedgerError as e:
        _event(f"refused: {e.code}")
        after = store.snapshot()
        assert after == before, f"{name} raised {e!r} but changed balances"
        if isinstance(e, InvalidCommand):
            assert books.recorded(key) is None, f"{name}: an invalid request used its key"
        return
    _event("applied")
    after = store.snapshot()
    moved = {n for n in after if after[n] != before.get(n)}
    # It applied: it must mean what the flow says.
    generic = ("post", "hold")  # the journal itself: legs of either sign, any accounts
    if name not in ("capture_card", "refund", "payout", *generic) or (
        amount is not None and name not in generic
    ):
        assert _positive_decimal(amount) is not None, f"{name} applied amount {amount!r}"
    if name not in ("capture_card", "refund", "request_money", "split_bill", "fx_pay", *generic):
        assert a != b, f"{name} applied with the same account on both sides"
    for frozen in ("w:frozen", "w:closed"):
        assert frozen not in moved, f"{name} moved {frozen}"
    assert "w:nobody" not in after
    totals: dict[str, Decimal] = {}
    for n, (posted, _, _) in after.items():
        state = books.balance(n)
        sign = 1 if state.normal == "debit" else -1
        totals[state.asset] = totals.get(state.asset, Decimal(0)) + sign * posted
    assert all(t == 0 for t in totals.values()), totals
    del outcome


RefCall = Callable[[Ledger, str, Any], Any]
ID_FLOWS: dict[str, RefCall] = {
    "settle_p2p": pay.settle_p2p,
    "cancel_p2p": pay.cancel_p2p,
    "accept_request": pay.accept_request,
    "decline_request": pay.decline_request,
    "confirm_bank_transfer": pay.confirm_bank_transfer,
    "fail_bank_transfer": pay.fail_bank_transfer,
    "return_bank_transfer": pay.return_bank_transfer,
    "release_card": pay.release_card,
    "capture_card (full)": pay.capture_card,
    "refund (full)": pay.refund,
    "payout (all)": lambda L, k, ref: pay.payout(L, k, merchant=str(ref), rail="bank"),
}
REFS = (
    "p2p hold", "request", "deposit hold", "transfer", "unknown", "text", "none", "number",
    "charge", "card auth",
)  # fmt: skip


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=st.sampled_from(sorted(ID_FLOWS)), ref=st.sampled_from(REFS))
def test_flows_on_hostile_references_resolve_or_change_nothing(
    store: Books, name: str, ref: str
) -> None:
    """The flows that take an entry id: any id (of another kind of entry, unknown, not a
    UUID at all) either resolves what it names, keeping the books balanced and frozen
    and closed accounts untouched, or raises a typed error and changes nothing."""
    books, key = store.books, store.key()
    before = store.snapshot()
    try:
        ID_FLOWS[name](books, key, store.refs[ref])
    except LedgerError as e:
        _event(f"refused: {e.code}")
        assert store.snapshot() == before, f"{name}({ref}) raised {e!r} but changed balances"
        return
    _event("applied")
    after = store.snapshot()
    for frozen in ("w:frozen", "w:closed"):
        assert after[frozen] == before[frozen], f"{name}({ref}) moved {frozen}"
    totals: dict[str, Decimal] = {}
    for n, (posted, _, _) in after.items():
        state = books.balance(n)
        sign = 1 if state.normal == "debit" else -1
        totals[state.asset] = totals.get(state.asset, Decimal(0)) + sign * posted
    assert all(t == 0 for t in totals.values()), totals


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    name=st.sampled_from(NAMES),
    a=ACCOUNTS,
    b=ACCOUNTS,
    c=ACCOUNTS,
    amount=AMOUNTS,
    fee=AMOUNTS,
)
def test_hostile_arguments_apply_as_documented_or_change_nothing(
    store: Books, name: str, a: str, b: str, c: str, amount: Any, fee: Any
) -> None:
    check(store, name, a, b, c, amount, fee)


@pytest.mark.parametrize(
    ("planted", "call", "caught"),
    [
        ("_positive", ("send", "w:a", "w:b", "w:c", "-5", None), "applied amount"),
        ("_distinct", ("charge", "w:a", "w:a", "fees", "5", "1"), "same account"),
    ],
)
def test_a_planted_bug_is_caught(
    planted: str, call: tuple[Any, ...], caught: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flow without one of its own checks moves money it must not: the checks see it."""
    import importlib

    from ledger.assets import parse_decimal

    # The module the recipe is written in (ledger.commands._payments_*): it reads the
    # check under that name.
    recipes = importlib.import_module(getattr(pay, call[0]).__module__)
    bugs = {"_positive": lambda value, what="": parse_decimal(value), "_distinct": lambda **_: None}
    monkeypatch.setattr(recipes, planted, bugs[planted])
    fresh = Books()
    try:
        with pytest.raises(AssertionError, match=caught):
            check(fresh, *call)
    finally:
        fresh.books.close()

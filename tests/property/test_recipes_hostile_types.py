"""Hostile values for every parameter of every recipe of ``ledger.payments``, in both
forms (on a ``Ledger``, and awaited on an ``AsyncLedger``).

``test_payments_hostile`` draws amounts, fees and accounts among the valid ones; here
any one parameter (accounts, assets, keys, notes, metadata, payers, references,
subscription and period, entry ids...) gets a value of the wrong type or shape: None,
numbers, NaN and sNaN, bytes, lists, dicts, lone surrogates, oversized text. Each
call either applies, or raises a typed ``LedgerError`` (never a bare ``TypeError``,
``AttributeError`` or ``UnicodeEncodeError`` from deep inside) with every balance
unchanged and, for an ``InvalidCommand``, its key unused; and the awaited form
raises the same error class as the direct one.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import AsyncLedger, Ledger
from ledger import payments as pay
from ledger.errors import InvalidCommand, LedgerError

ACCOUNTS = ("bank", "bank:eur", "fees", "fx:usd", "fx:eur", "a", "b", "c", "e")

HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True),
    st.sampled_from(
        [Decimal("NaN"), Decimal("sNaN"), Decimal("-Infinity"), Decimal("1e-30"), Decimal(3)]
    ),
    st.sampled_from(
        ["", " ", "a\n", "\ud800", "a\x00b", "x" * 5000, "\u0661\u0660", "1_0", "USD", "a"]
    ),
    st.text(max_size=8),
    st.binary(max_size=4),
    st.lists(st.sampled_from(["a", "b"]), max_size=2),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(), max_size=2),
    st.just(frozenset()),
    st.just(uuid.UUID(int=5)),
    st.just(datetime(2020, 1, 1)),
    st.just(object()),
)


class Books:
    """One SQLite store for all examples (fresh keys per call), its AsyncLedger on a
    loop of its own, and the references the id-taking recipes need."""

    def __init__(self) -> None:
        self.dir = tempfile.TemporaryDirectory()
        self.books = b = Ledger.open(f"sqlite:///{self.dir.name}/types.db")
        self.loop = asyncio.new_event_loop()
        self.abooks = AsyncLedger(b)
        self.counter = 0
        b.open_account("bank", "USD", normal="debit")
        b.open_account("bank:eur", "EUR", normal="debit")
        b.open_account("fees", "USD")
        b.open_account("fx:usd", "USD")
        b.open_account("fx:eur", "EUR", normal="debit")
        for name in ("a", "b", "c"):
            b.open_account(name, "USD", min_balance="0")
            b.transfer(f"fund-{name}", debit="bank", credit=name, amount="1000", asset="USD")
        b.open_account("e", "EUR", min_balance="0")
        self.charge = pay.charge(b, "s1", customer="a", merchant="b", amount="50", asset="USD")
        auth_until = datetime.now(UTC) + timedelta(days=30)
        self.auth = pay.authorize_card(
            b, "s2", card="a", merchant="c", amount="50", asset="USD", expires_at=auth_until
        )
        self.hold = pay.send(
            b, "s3", sender="a", recipient="b", amount="5", asset="USD", mode="standard"
        )
        self.request = pay.request_money(b, "s4", requester="a", payer="b", amount="1", asset="USD")

    def key(self) -> str:
        self.counter += 1
        return f"types-{self.counter}"

    def snapshot(self) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
        return {
            name: (s.posted, s.pending_out, s.pending_in)
            for name in ACCOUNTS
            for s in [self.books.balance(name)]
        }

    def close(self) -> None:
        self.loop.close()
        self.books.close()
        self.dir.cleanup()


@pytest.fixture(scope="module")
def store() -> Iterator[Books]:
    books = Books()
    yield books
    books.close()


def valid_arguments(books: Books) -> dict[str, dict[str, Any]]:
    """Each recipe's keyword arguments (its key apart), all valid."""
    later = datetime.now(UTC) + timedelta(days=1)
    return {
        "send": dict(
            sender="a", recipient="b", amount="1", asset="USD", note="n",
            visibility="public", fee="0.10", fee_account="fees", mode="instant",
            settle_by=None, metadata={"m": 1},
        ),
        "send_standard": dict(
            sender="a", recipient="b", amount="1", asset="USD", mode="standard",
            settle_by=later,
        ),
        "settle_p2p": dict(payment_id=books.hold.entry_id),
        "cancel_p2p": dict(payment_id=books.hold.entry_id),
        "request_money": dict(
            requester="a", payer="b", amount="1", asset="USD", note="n", visibility="friends"
        ),
        "accept_request": dict(request_id=books.request.entry_id),
        "decline_request": dict(request_id=books.request.entry_id, reason="r"),
        "split_bill": dict(
            requester="a", payers=["b", "c"], amount="3", asset="USD", note="n",
            visibility="private", include_requester=True,
        ),
        "start_deposit": dict(wallet="a", rail="bank", amount="1", asset="USD", reference="r"),
        "start_withdrawal": dict(
            wallet="a", rail="bank", amount="1", asset="USD", reference="r"
        ),
        "confirm_bank_transfer": dict(transfer_id=books.hold.entry_id),
        "fail_bank_transfer": dict(transfer_id=books.hold.entry_id, reason="r"),
        "return_bank_transfer": dict(posted_id=books.charge.entry_id, reason="r"),
        "authorize_card": dict(
            card="a", merchant="c", amount="1", asset="USD", expires_at=later, reference="r"
        ),
        "capture_card": dict(authorization_id=books.auth.entry_id, amount="1"),
        "release_card": dict(authorization_id=books.auth.entry_id),
        "charge": dict(
            customer="a", merchant="b", amount="2", asset="USD", fee="1", platform="fees",
            description="d", metadata={"m": 1},
        ),
        "refund": dict(charge_id=books.charge.entry_id, amount="1", reason="r"),
        "payout": dict(merchant="b", rail="bank", amount="1", reference="r"),
        "payout_all": dict(merchant="b", rail="bank", amount=None, reference="r"),
        "charge_subscription": dict(
            subscription="sub", period="2026-11", customer="a", merchant="b", amount="2",
            asset="USD", fee="1", platform="fees",
        ),
        "fx_pay": dict(
            payer="a", payee="e", amount="1", pay_asset="USD", receive_asset="EUR",
            rate="0.9", fx_accounts={"USD": "fx:usd", "EUR": "fx:eur"}, note="n",
        ),
    }  # fmt: skip


RECIPES = {"send_standard": "send", "payout_all": "payout"}


def _cases() -> list[tuple[str, str]]:
    """(recipe, parameter) pairs, the key included (not for charge_subscription)."""
    fake = Books.__new__(Books)
    for ref in ("hold", "request", "charge", "auth"):
        setattr(fake, ref, _Ref())
    out = []
    for name, kwargs in valid_arguments(fake).items():
        if name != "charge_subscription":
            out.append((name, "key"))
        out += [(name, param) for param in kwargs]
    return sorted(out)


class _Ref:
    entry_id = uuid.UUID(int=0)


CASES = _cases()


def call(books: Books, asynchronous: bool, name: str, param: str, value: Any) -> Any:
    kwargs = valid_arguments(books)[name]
    recipe = getattr(pay, RECIPES.get(name, name))
    key: Any = books.key()
    if name == "charge_subscription":
        kwargs["subscription"] = key
    if param == "key":
        key = value
    else:
        kwargs[param] = value
    args = () if name == "charge_subscription" else (key,)
    if asynchronous:
        return books.loop.run_until_complete(recipe(books.abooks, *args, **kwargs))
    return recipe(books.books, *args, **kwargs)


def attempt(books: Books, asynchronous: bool, name: str, param: str, value: Any) -> type | None:
    """The error class the call raised (None if it applied); checks that a refusal
    changed nothing and that an invalid request used no key."""
    before = books.snapshot()
    used = books.counter + 1
    try:
        call(books, asynchronous, name, param, value)
    except LedgerError as e:
        assert books.snapshot() == before, f"{name}({param}={value!r:.40}) raised {e!r} but moved"
        if isinstance(e, InvalidCommand):
            assert books.books.recorded(f"types-{used}") is None
        return type(e)
    except Exception as e:
        raise AssertionError(
            f"{name}({param}={value!r:.60}) raised an untyped {type(e).__name__}: {e}"
        ) from e
    return None


@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=st.sampled_from(CASES), value=HOSTILE)
def test_a_hostile_parameter_is_a_typed_refusal_alike_in_both_forms(
    store: Books, case: tuple[str, str], value: Any
) -> None:
    name, param = case
    direct = attempt(store, False, name, param, value)
    awaited = attempt(store, True, name, param, value)
    if direct is not None and awaited is not None:
        assert direct is awaited, f"{name}({param}={value!r:.40}): {direct} vs {awaited}"


@pytest.mark.parametrize(
    ("name", "param", "value"),
    [
        ("send", "sender", ["a"]),
        ("payout_all", "merchant", None),
        ("payout_all", "key", None),
        ("split_bill", "asset", 1),
        ("split_bill", "payers", 5),
        ("fx_pay", "receive_asset", Decimal("sNaN")),
        ("charge", "metadata", "m=1"),
        ("charge_subscription", "period", None),
    ],
)
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_known_hostile_parameters_are_invalid_commands(
    store: Books, name: str, param: str, value: Any, asynchronous: bool
) -> None:
    """The cases that once escaped as TypeError, AttributeError or ValueError (or, for
    a subscription's period of None, charged the customer)."""
    assert attempt(store, asynchronous, name, param, value) is not None
    with pytest.raises(InvalidCommand):
        call(store, asynchronous, name, param, value)

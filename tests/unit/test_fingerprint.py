"""The request fingerprint is the sorted JSON of ``model_dump()`` without the key.

Fingerprints are stored with every applied command: a change in how they are computed
would turn an honest retry into an idempotency conflict. The write path reads the
fields directly (faster); these tests pin it to the ``model_dump`` definition.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from ledger.commands import (
    AtomicBatch,
    DeclareAsset,
    ExpireHold,
    LegInput,
    OpenAccount,
    PayRequest,
    PlaceHold,
    PostEntry,
    PostHold,
    RequestPayment,
    ReverseEntry,
    VoidHold,
)
from ledger.commands.executor import fingerprint
from ledger.commands.models import Command


def _reference(command: Command) -> str:
    exclude = {"key", "now"} if isinstance(command, ExpireHold) else {"key"}
    body = command.model_dump(exclude=exclude)

    def default(value: object) -> str:
        assert isinstance(value, Decimal)
        return str(value.normalize())

    data = orjson.dumps(body, default=default, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(data).hexdigest()


_amounts = st.decimals(min_value=-(10**6), max_value=10**6, places=2, allow_nan=False).filter(
    lambda d: d != 0
)
_when = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)).map(
    lambda d: d.replace(tzinfo=UTC)
)
_text = st.text(max_size=5).filter(lambda t: "\x00" not in t)
_metadata = st.dictionaries(
    _text, st.one_of(st.integers(-(2**63), 2**63 - 1), _text, st.none()), max_size=3
)


@st.composite
def _legs(draw: Any) -> tuple[LegInput, ...]:
    amount = draw(_amounts)
    return (
        LegInput(account="a:1", amount=amount, asset="USD"),
        LegInput(account="a:2", amount=-amount, asset="USD"),
    )


@st.composite
def _commands(draw: Any) -> Command:
    key = draw(st.text(min_size=1, max_size=8).filter(lambda t: "\x00" not in t))
    when = draw(st.none() | _when)
    meta = draw(_metadata)
    entry = uuid.UUID(int=draw(st.integers(0, 2**128 - 1)))
    kind = draw(st.integers(0, 11))
    if kind == 0:
        return PostEntry(key=key, legs=draw(_legs()), effective_at=when, metadata=meta)
    if kind == 1:
        at = draw(_when)
        return PlaceHold(key=key, legs=draw(_legs()), expires_at=at + timedelta(days=1))
    if kind == 2:
        return PostHold(key=key, hold_id=entry, legs=draw(st.none() | _legs()))
    if kind == 3:
        return VoidHold(key=key, hold_id=entry, description="void")
    if kind == 4:
        return ExpireHold(key=key, hold_id=entry, now=draw(_when))
    if kind == 5:
        return ReverseEntry(key=key, entry_id=entry, amount=Decimal("1.5"), account="a:1")
    if kind == 6:
        return OpenAccount(
            key=key, account="a:1", asset="USD", min_balance=Decimal("0.00"), metadata=meta
        )
    if kind == 7:
        return DeclareAsset(key=key, code="PTS", scale=draw(st.integers(0, 18)))
    if kind == 8:
        return RequestPayment(
            key=key, requester="a:1", payer="a:2", amount=abs(draw(_amounts)), asset="USD"
        )
    if kind == 9:
        return PayRequest(key=key, request_id=entry, metadata=meta)
    if kind == 10:
        return PostEntry(key=key, legs=draw(_legs()), expected_versions={"a:1": 3}, description="x")
    inner = PostEntry(key=f"{key}-in", legs=draw(_legs()))
    opened = OpenAccount(key=f"{key}-open", account="a:3", asset="EUR")
    return AtomicBatch(key=key, commands=(opened, inner))


@given(_commands())
def test_fingerprint_is_model_dump_json(command: Command) -> None:
    assert fingerprint(command) == _reference(command)


def test_equal_amounts_in_other_notation_are_the_same_request() -> None:
    def post(amount: str) -> PostEntry:
        return PostEntry(
            key="k",
            legs=(
                LegInput(account="a:1", amount=Decimal(amount), asset="USD"),
                LegInput(account="a:2", amount=-Decimal(amount), asset="USD"),
            ),
        )

    assert fingerprint(post("10.0")) == fingerprint(post("10.00"))
    assert fingerprint(post("10.0")) != fingerprint(post("10.01"))


def test_a_known_fingerprint_never_changes() -> None:
    command = PostEntry(
        key="k",
        legs=(
            LegInput(account="a:1", amount=Decimal("1.00"), asset="USD"),
            LegInput(account="a:2", amount=Decimal("-1.00"), asset="USD"),
        ),
    )
    assert fingerprint(command) == _reference(command)
    assert fingerprint(command) == (
        "fb8ed8df5fc59fc38927e2c75ce119a4e1981cbf4cdb9ec1733e4afcfa48f276"
    )

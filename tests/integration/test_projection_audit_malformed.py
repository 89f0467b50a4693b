"""Case 17, malformed rows: an event edited with raw SQL into something that is not a
well-formed body (not a JSON object, or a field of the wrong type) is a finding that
names its position, never a crash of the audit; ``position_at`` (``audit --until``)
passes over an unreadable stamp and refuses a time without a zone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from ledger import Ledger
from ledger.errors import InvalidCommand
from ledger.projections.audit import audit, position_at
from tests.integration.test_cli import Raw, seeded


def edit(raw: Raw, position: int, state: bytes) -> None:
    raw.execute(f"UPDATE stored_events SET state = ? WHERE {raw.pos} = ?", state, position)


def nth(raw: Raw, topic: str, index: int = 2) -> tuple[int, dict[str, Any]]:
    rows = [(p, s) for p, t, s in raw.rows() if t == f"ledger:{topic}:1"]
    position, state = rows[index]
    return position, orjson.loads(state)


def audited(url: str) -> list[tuple[int, str]]:
    with Ledger.open(url) as books:
        report = audit(books.store)
    return [(f.position, f.code) for f in report.findings]


@pytest.mark.parametrize("body", [b"[]", b"null", b'"text"', b"5"])
def test_a_body_that_is_not_an_object_is_a_finding(store_url: str, body: bytes) -> None:
    seeded(store_url)
    raw = Raw(store_url)
    position, _ = nth(raw, "Entry")
    edit(raw, position, body)
    findings = audited(store_url)
    assert (position, "malformed") in findings, findings


@pytest.mark.parametrize(
    ("topic", "field", "value"),
    [
        ("AccountOpened", "account", 7),
        ("AccountOpened", "asset", None),
        ("AccountOpened", "scale", "2"),
        ("AccountOpened", "scale", 99),
        ("Entry", "key", ["k"]),
    ],
)
def test_a_field_of_the_wrong_type_is_a_finding(
    store_url: str, topic: str, field: str, value: Any
) -> None:
    seeded(store_url)
    raw = Raw(store_url)
    position, body = nth(raw, topic)
    body[field] = value
    edit(raw, position, orjson.dumps(body))
    findings = audited(store_url)
    assert (position, "malformed") in findings, findings


def test_position_at_passes_over_an_unreadable_stamp(store_url: str) -> None:
    seeded(store_url)
    raw = Raw(store_url)
    position, body = nth(raw, "Entry")
    body["recorded_at"] = "not a time"
    edit(raw, position, orjson.dumps(body))
    with Ledger.open(store_url) as books:
        head = books.store.max_position()
        assert position_at(books.store, datetime(9999, 1, 1, tzinfo=UTC)) == head
        with pytest.raises(InvalidCommand):
            position_at(books.store, datetime(2026, 1, 1))

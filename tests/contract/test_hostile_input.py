"""Hostile strings (SQL injection attempts, quotes, NUL bytes, very long and
non-UTF-8 text) in account names, keys, descriptions and metadata: each is stored
verbatim and read back, or refused with a typed error and nothing stored; the tables
survive. Every SQL statement takes values as parameters."""

from __future__ import annotations

import orjson
import pytest

from ledger import InvalidCommand, Ledger
from ledger.adapters.jsonl import export_lines
from ledger.commands.models import DESCRIPTION_MAX_CHARS, KEY_MAX_CHARS, METADATA_MAX_BYTES
from ledger.projections import BalancesView, FeedView, ProjectionRunner
from ledger.projections.audit import audit

HOSTILE = [
    "'; DROP TABLE stored_events; --",
    'Robert"); DELETE FROM ledger_keys; --',
    "quote ' double \" backslash \\ percent % underscore _",
    "newline\nand\ttab",
    "emoji 💸 and RTL \u202e",
    "?, $1, %s, :name",  # placeholder syntax of the drivers
]


def log_size(books: Ledger) -> int:
    return books.store.max_position()


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_is_stored_verbatim(books: Ledger, text: str) -> None:
    books.open_account("bank", "USD", normal="debit")
    books.open_account("alice", "USD", owner="user:alice", metadata={"bio": text, text: 1})
    key = f"key {text}"
    books.transfer(
        key,
        debit="bank",
        credit="alice",
        amount="1",
        asset="USD",
        description=text,
        metadata={"note": text, "nested": [text, {"k": text}]},
    )
    assert books.transfer(
        key,
        debit="bank",
        credit="alice",
        amount="1",
        asset="USD",
        description=text,
        metadata={"note": text, "nested": [text, {"k": text}]},
    ).replayed
    runner = ProjectionRunner.for_ledger(books, [BalancesView(), FeedView()])
    runner.catch_up()
    with runner.views.snapshot() as w:
        notes = [item.note for item in FeedView.feed(w, "user:alice").items]
    runner.close()
    assert notes == [text]
    exported = b"".join(export_lines(books))
    assert _json_escaped(text) in exported and _json_escaped(key) in exported
    assert audit(books.store).clean
    assert books.balance("alice").posted == 1


def _json_escaped(text: str) -> bytes:
    return orjson.dumps(text)[1:-1]


@pytest.mark.parametrize(
    "field",
    [
        "account",
        "key",
        "description",
        "metadata",
        "surrogate_description",
        "surrogate_key",
        "nul_description",
        "nul_metadata",
        "nul_key",
    ],
)
def test_hostile_input_beyond_the_rules_is_refused_and_nothing_stored(
    books: Ledger, field: str
) -> None:
    books.open_account("bank", "USD", normal="debit")
    books.open_account("alice", "USD")
    before = log_size(books)
    args: dict[str, object] = {
        "debit": "bank",
        "credit": "alice",
        "amount": "1",
        "asset": "USD",
    }
    key = "k"
    if field == "account":
        args["credit"] = "alice'; DROP TABLE stored_events; --"
    elif field == "key":
        key = "k" * (KEY_MAX_CHARS + 1)
    elif field == "description":
        args["description"] = "x" * (DESCRIPTION_MAX_CHARS + 1)
    elif field == "metadata":
        args["metadata"] = {"blob": "x" * METADATA_MAX_BYTES}
    elif field == "nul_description":
        args["description"] = "nul\x00byte"
    elif field == "nul_metadata":
        args["metadata"] = {"note": ["ok", {"deep": "nul\x00byte"}]}
    elif field == "nul_key":
        key = "nul\x00key"
    elif field == "surrogate_description":
        args["description"] = "bad \udc80 utf-8"
    else:
        key = "bad \udc80 key"
    with pytest.raises(InvalidCommand):
        books.transfer(key, **args)  # type: ignore[arg-type]
    assert log_size(books) == before
    assert books.balance("alice").posted == 0
    # nothing was burned: the key works for a valid request
    books.transfer("k", debit="bank", credit="alice", amount="1", asset="USD")
    assert audit(books.store).clean


def test_hostile_account_ids_are_refused_not_interpreted(books: Ledger) -> None:
    for name in ["a'b", "a;b", "a b", "", "x" * 200, "a\x00b", "../etc"]:
        with pytest.raises(InvalidCommand):
            books.open_account(name, "USD")
    assert log_size(books) == 0

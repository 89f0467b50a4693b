"""The chunked throughput path: same outcomes as one-by-one, also when a chunk's
append fails and is redone."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from ledger import Ledger
from ledger.commands import LegInput, PostEntry
from ledger.errors import InvalidCommand
from ledger.store import AppendConflict, WriteBatch


def transfers(n: int, amount: str = "1") -> list[PostEntry]:
    value = Decimal(amount)
    return [
        PostEntry(
            key=f"t{i}",
            legs=(
                LegInput(account=f"w{i % 3}", amount=value, asset="USD"),
                LegInput(account=f"w{(i + 1) % 3}", amount=-value, asset="USD"),
            ),
        )
        for i in range(n)
    ]


def setup(books: Ledger) -> None:
    books.open_account("bank", "USD", normal="debit")
    for i in range(3):
        books.open_account(f"w{i}", "USD", min_balance="0")
    books.transfer("fund", debit="bank", credit="w0", amount="5", asset="USD")


def test_chunked_outcomes_match_sequential(store_url: str, tmp_path: Any) -> None:
    with Ledger.open(store_url) as books:
        setup(books)
        outcomes = books.submit_all(transfers(40), chunk_size=7)
        balances = {f"w{i}": books.balance(f"w{i}").posted for i in range(3)}
    reference_url = f"sqlite:///{tmp_path}/reference.db"
    with Ledger.open(reference_url) as ref:
        setup(ref)
        expected = [ref.submit(cmd) for cmd in transfers(40)]
        ref_balances = {f"w{i}": ref.balance(f"w{i}").posted for i in range(3)}
    assert [(o.status, o.code) for o in outcomes] == [(o.status, o.code) for o in expected]
    assert balances == ref_balances


def test_a_failed_chunk_is_redone_and_nothing_applies_twice(tmp_path: Any) -> None:
    with Ledger.open(f"sqlite:///{tmp_path}/l.db") as books:
        setup(books)
        real_append = books.store.append
        calls = {"n": 0}

        def flaky(batch: WriteBatch) -> Any:
            calls["n"] += 1
            if calls["n"] == 2:
                raise AppendConflict("injected")
            return real_append(batch)

        books.store.append = flaky  # type: ignore[method-assign]
        outcomes = books.submit_all(transfers(30), chunk_size=5)
        assert calls["n"] > 6
        assert all(o.status in ("applied", "rejected") for o in outcomes)
        again = books.submit_all(transfers(30), chunk_size=5)
        assert [o.status for o in again] == [o.status for o in outcomes]
        assert all(o.replayed for o in again)
        total = sum(books.balance(f"w{i}").posted for i in range(3))
        assert total == Decimal("5.00")


def as_mapping(command: PostEntry) -> dict[str, Any]:
    return {
        "kind": "post_entry",
        "key": command.key,
        "legs": [
            {"account": leg.account, "amount": str(leg.amount), "asset": leg.asset}
            for leg in command.legs
        ],
    }


def test_mappings_are_the_same_requests_as_models(store_url: str) -> None:
    with Ledger.open(store_url) as books:
        setup(books)
        models = transfers(12)
        mixed: list[Any] = [as_mapping(c) if i % 2 else c for i, c in enumerate(models)]
        first = books.submit_all(mixed, chunk_size=5)
        assert {o.status for o in first} == {"applied"}
        # The same requests as models: every one replays with its original outcome.
        again = books.submit_all(models, chunk_size=5)
        assert all(o.replayed for o in again)
        assert [(o.status, o.code) for o in again] == [(o.status, o.code) for o in first]
        # A mapping reusing a key for a different amount is a conflict.
        changed = as_mapping(models[0])
        changed["legs"][0]["amount"] = "2"
        changed["legs"][1]["amount"] = "-2"
        (conflict,) = books.submit_many([changed])
        assert conflict.code == "idempotency_conflict"


def test_an_invalid_mapping_is_named_and_nothing_applies(store_url: str) -> None:
    with Ledger.open(store_url) as books:
        setup(books)
        before = books.store.max_position()
        good = [as_mapping(c) for c in transfers(3)]
        floats = dict(good[2], legs=[{"account": "w0", "amount": 1.5, "asset": "USD"}] * 2)
        for bad, reason in (
            (floats, "float"),
            ({"key": "x", "legs": []}, "kind"),
            (dict(good[2], kind="no_such_command"), "kind"),
            (dict(good[2], surprise=1), "surprise"),
        ):
            with pytest.raises(InvalidCommand, match=r"^command 2: .*") as raised:
                books.submit_all([good[0], transfers(2)[1], bad], chunk_size=2)
            assert reason in str(raised.value)
        assert books.store.max_position() == before


def test_sqlite_statement_limits_split_lookups_and_inserts(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lookups, key checks and multi-row inserts each split across statement-size limits
    # (thousands in production): with tiny limits, every split point is crossed.
    from ledger.adapters import sqlite_store

    monkeypatch.setattr(sqlite_store, "_CHUNK", 4)
    monkeypatch.setattr(sqlite_store, "_PARAMS_MAX", 5)
    monkeypatch.setattr(sqlite_store, "_ROWS_PER_INSERT", 3)
    monkeypatch.setattr(sqlite_store, "_ROW_MARKS", ",".join(["(?,?,?,?)"] * 3))
    with Ledger.open(f"sqlite:///{tmp_path}/l.db") as books:
        setup(books)
        before = books.store.max_position()
        first = books.submit_all(transfers(23), chunk_size=10)
        written = books.store.max_position() - before
        assert written > 23  # entries plus account events, in several statements each
        again = books.submit_all(transfers(23), chunk_size=10)
        assert all(o.replayed for o in again)
        assert [(o.status, o.code) for o in again] == [(o.status, o.code) for o in first]
        assert books.store.max_position() - before == written
        assert sum(books.balance(f"w{i}").posted for i in range(3)) == Decimal("5.00")


def test_sqlite_key_check_covers_every_statement_of_a_batch(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another writer records a rejection under a key of this batch after the batch
    # looked its keys up: the check under the write lock must find it wherever the key
    # sits in the batch (here in the last of several statements), so the key is not
    # applied on top of its recorded rejection.
    from ledger.adapters import sqlite_store

    monkeypatch.setattr(sqlite_store, "_PARAMS_MAX", 3)
    url = f"sqlite:///{tmp_path}/l.db"
    with Ledger.open(url) as books, Ledger.open(url) as other:
        setup(books)
        batch = transfers(10)
        real_read = books.store.read
        raced = []

        def read_then_race(*args: Any) -> Any:
            found = real_read(*args)
            if not raced:
                raced.append(other.submit(transfers(10, amount="1000")[9]))
            return found

        books.store.read = read_then_race  # type: ignore[method-assign]
        outcomes = books.submit_all(batch, chunk_size=10)
        assert raced[0].code == "balance_rule_violated"
        assert outcomes[9].code == "idempotency_conflict"
        assert outcomes[9].status == "conflict"

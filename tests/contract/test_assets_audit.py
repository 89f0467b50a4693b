"""The audit checks assets and scales from the events themselves: each asset declared
once, in its own stream, never an ISO 4217 currency; each account opened in a known
asset (an ISO currency, or one declared before it) with that asset's scale. A writer
that broke these (a bug, or someone appending events with the library's own
functions) is caught though every hash and version is consistent; on every store."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from eventsourcing.persistence import StoredEvent

from ledger import Ledger
from ledger.assets import Asset
from ledger.commands import builders
from ledger.errors import UnknownAsset
from ledger.events import account_changed, account_opened, account_state_from, asset_declared
from ledger.model import AccountState, account_stream_id, asset_stream_id
from ledger.projections.audit import Finding, audit
from ledger.store import WriteBatch, stored_event

NOW = datetime(2026, 1, 2, tzinfo=UTC)


@pytest.fixture
def books(store_url: str) -> Iterator[Ledger]:
    with Ledger.open(store_url) as ledger:
        ledger.declare_asset("PTS", 0)
        ledger.open_account("bank", "USD", normal="debit")
        ledger.open_account("alice", "USD")
        ledger.transfer("fund", debit="bank", credit="alice", amount="100", asset="USD")
        assert audit(ledger.store).clean
        yield ledger


def plant(books: Ledger, event: StoredEvent) -> None:
    """Append one event as a faulty writer would: a write of its own, version 1."""
    books.store.append(WriteBatch(events=[event]))


def declaration(code: str, scale: int, stream: uuid.UUID | None = None) -> StoredEvent:
    sid = asset_stream_id(code) if stream is None else stream
    return asset_declared(Asset(code, scale), sid, f"declare-{uuid.uuid4()}", NOW)


def opening(name: str, code: str, scale: int) -> StoredEvent:
    state = AccountState(
        name, account_stream_id(name), Asset(code, scale), "credit", None, None, None, 1, ""
    )
    return account_opened(state, f"open-{name}", {}, NOW)


def findings(books: Ledger) -> list[Finding]:
    return audit(books.store).findings


def test_an_asset_declared_in_a_foreign_stream_is_found(books: Ledger) -> None:
    plant(books, declaration("GEMS", 2, stream=asset_stream_id("COINS")))
    [found] = findings(books)
    assert (found.code, found.stream) == ("chain", str(asset_stream_id("COINS")))
    assert found.message == "asset 'GEMS' declared in a foreign stream"
    assert found.asset == "GEMS"


def test_an_asset_declared_again_with_another_scale_is_found(books: Ledger) -> None:
    stream = uuid.uuid4()
    plant(books, declaration("PTS", 2, stream=stream))
    found = [f for f in findings(books) if f.code == "chain"]
    messages = {f.message for f in found}
    assert "asset 'PTS' declared twice (scale 0, then 2)" in messages, found
    assert {f.stream for f in found} == {str(stream)}


def test_an_iso_currency_declared_is_found(books: Ledger) -> None:
    plant(books, declaration("EUR", 3))
    [found] = findings(books)
    assert (found.code, found.asset) == ("asset", "EUR")
    assert found.message == (
        "asset 'EUR' declared with scale 3: an ISO 4217 currency (2 decimals) is never declared"
    )


def test_an_asset_declared_with_an_invalid_code_is_found(books: Ledger) -> None:
    plant(books, declaration("gems!", 2))
    [found] = findings(books)
    assert found.code == "asset"
    assert "asset code 'gems!' is invalid" in found.message


@pytest.mark.parametrize(
    ("code", "scale", "expected"),
    [
        ("USD", 3, "USD has 2 decimals (ISO 4217)"),
        ("JPY", 2, "JPY has 0 decimals (ISO 4217)"),
        ("PTS", 2, "PTS is declared with 0 decimals"),
    ],
)
def test_an_account_opened_with_a_scale_not_its_assets_is_found(
    books: Ledger, code: str, scale: int, expected: str
) -> None:
    plant(books, opening("carol", code, scale))
    [found] = findings(books)
    assert (found.code, found.account, found.asset) == ("asset", "carol", code)
    assert found.stream == str(account_stream_id("carol"))
    assert found.message == f"account 'carol' opened in {code} with scale {scale}; {expected}"


def test_an_account_opened_in_an_asset_not_declared_yet_is_found(books: Ledger) -> None:
    plant(books, opening("carol", "GEMS", 2))
    books.declare_asset("GEMS", 2)  # declared only after its first use
    [found] = findings(books)
    assert (found.code, found.account, found.asset) == ("unknown", "carol", "GEMS")
    assert found.message == (
        "account 'carol' opened in GEMS, which is neither an ISO 4217 currency nor declared"
    )


def test_assets_used_as_the_write_path_allows_stay_clean(books: Ledger) -> None:
    books.open_account("points:alice", "PTS")
    books.open_account("points:pool", "PTS", normal="debit")
    books.transfer("pts", debit="points:pool", credit="points:alice", amount="7", asset="PTS")
    books.open_account("yen", "JPY", normal="debit")
    with pytest.raises(UnknownAsset):  # never declared: refused, nothing written
        books.open_account("coin", "BTC8")
    books.atomic(  # declared and used in one write
        "gems",
        [
            builders.declare_asset("GEMS", 4),
            builders.open_account("gems:alice", "GEMS"),
        ],
    )
    report = audit(books.store)
    assert report.clean, report.findings
    assert report.to_json()["trial_balance"]["PTS"]["debits"] == "7"


def test_an_account_changed_in_a_foreign_stream_is_found(books: Ledger) -> None:
    """As an account opened in a foreign stream: its next version written elsewhere,
    with the right version, hash and balances, is invisible to the write path."""
    sid = account_stream_id("alice")
    alice = account_state_from(*books.store.load_streams([sid])[sid])
    alice.version += 1
    alice.stream_id = stream = uuid.uuid4()
    plant(books, account_changed(alice, 0))
    [found] = findings(books)
    assert (found.code, found.stream, found.account) == ("chain", str(stream), "alice")
    assert found.message == "account 'alice' changed in a foreign stream"


def test_an_event_of_an_unknown_topic_is_found(books: Ledger) -> None:
    stream = uuid.uuid4()
    plant(books, stored_event(stream, 1, "ledger:Other:1", b'{"code":"PTS"}'))
    [found] = findings(books)
    assert (found.code, found.stream) == ("unknown", str(stream))
    assert found.message == "unknown event topic 'ledger:Other:1'"

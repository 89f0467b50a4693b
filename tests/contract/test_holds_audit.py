"""The audit checks hold and refund invariants from the events themselves, so that a
writer that broke them (a bug, or someone writing events with the library's own
functions) is caught even when every hash and balance event is consistent. The faulty
writer is the real write path with one of its checks taken out; on every store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ledger import Ledger
from ledger.commands import handlers
from ledger.commands.working_set import Tx
from ledger.projections.audit import audit
from tests.integration.test_cli import Raw


@pytest.fixture
def books(store_url: str) -> Iterator[Ledger]:
    with Ledger.open(store_url) as ledger:
        ledger.open_account("bank", "USD", normal="debit")
        ledger.open_account("alice", "USD", min_balance="0")
        ledger.open_account("shop", "USD")
        ledger.transfer("fund", debit="bank", credit="alice", amount="100", asset="USD")
        assert audit(ledger.store).clean
        yield ledger


def codes(books: Ledger) -> list[str]:
    return [f.code for f in audit(books.store).findings]


def test_a_hold_captured_twice_is_found(
    books: Ledger, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = books.hold("h", [("alice", "30", "USD"), ("shop", "-30", "USD")])
    assert held.entry_id is not None
    with monkeypatch.context() as m:  # a writer that does not mark the hold posted
        m.setattr(Tx, "update_entry", lambda self, entry, by: None)
        assert books.post_hold("cap-1", held.entry_id).ok
    with Ledger.open(store_url) as again:  # a fresh cache: the hold still reads pending
        assert again.post_hold("cap-2", held.entry_id).ok
    assert "hold" in codes(books)


def test_a_refund_beyond_what_was_captured_is_found(
    books: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    charge = books.transfer("ch", debit="alice", credit="shop", amount="40", asset="USD")
    assert charge.entry_id is not None
    back = [("shop", "40", "USD"), ("alice", "-40", "USD")]
    with monkeypatch.context() as m:  # a writer that does not count what was given back
        m.setattr(handlers, "_consume_reversible", lambda tx, original, legs: None)
        assert books.reverse("refund-1", charge.entry_id, back).ok
        assert books.reverse("refund-2", charge.entry_id, back).ok
    assert "reversal" in codes(books)


def test_an_update_without_its_entry_is_found(
    books: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hold marked voided by a write that released nothing."""
    held = books.hold("h", [("alice", "30", "USD"), ("shop", "-30", "USD")])
    assert held.entry_id is not None

    def no_entry(*args: Any, **kwargs: Any) -> None:
        return None

    with monkeypatch.context() as m:
        m.setattr(handlers, "_emit_entry", no_entry)
        m.setattr(Tx, "apply_legs", lambda self, *a, **k: None)
        books.void_hold("void", held.entry_id)
    assert "hold" in codes(books)


def test_clean_flows_stay_clean(books: Ledger) -> None:
    held = books.hold("h", [("alice", "30", "USD"), ("shop", "-30", "USD")])
    assert held.entry_id is not None
    cap = books.post_hold("cap", held.entry_id, [("alice", "20", "USD"), ("shop", "-20", "USD")])
    assert cap.entry_id is not None
    assert books.reverse("r1", cap.entry_id, amount="5", account="alice").ok
    assert books.reverse("r2", cap.entry_id).ok
    voided = books.hold("h2", [("alice", "5", "USD"), ("shop", "-5", "USD")])
    assert voided.entry_id is not None
    assert books.void_hold("v", voided.entry_id).ok
    request = books.request_payment("rq", requester="shop", payer="alice", amount="1", asset="USD")
    assert request.entry_id is not None
    assert books.pay_request("pay", request.entry_id).ok
    report = audit(books.store)
    assert report.clean, report.findings


def test_the_last_write_of_the_log_missing_its_update_is_found(
    books: Ledger, store_url: str
) -> None:
    """A decline moves no money: its write is the decline and the request's update, and
    no account event follows to chain to the update. Deleted from the end of the log,
    the update is missed by the hashes; the audit still finds the decline without it."""
    asked = books.request_payment("ask", requester="shop", payer="alice", amount="5", asset="USD")
    assert asked.entry_id is not None
    assert books.decline_request("no", asked.entry_id).ok
    assert audit(books.store).clean
    raw = Raw(store_url)
    position, topic, _ = raw.rows()[-1]
    assert topic == "ledger:EntryUpdated:1"
    raw.execute(f"DELETE FROM stored_events WHERE {raw.pos} = ?", position)
    assert "hold" in codes(books)

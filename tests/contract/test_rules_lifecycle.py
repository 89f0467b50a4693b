"""Lifecycle changes decided in one write with other commands on the same account, on
every store: each account version counts the entries it covers once, so the audit
replays the write as it was decided."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from ledger import Ledger
from ledger.errors import AccountClosed
from ledger.projections.audit import audit


def _pay(key: str, src: str, dst: str, amount: str) -> dict[str, Any]:
    return {
        "kind": "post_entry",
        "key": key,
        "legs": [
            {"account": src, "amount": amount, "asset": "USD"},
            {"account": dst, "amount": f"-{amount}", "asset": "USD"},
        ],
    }


def _limit(key: str, account: str, minimum: str) -> dict[str, Any]:
    return {"kind": "change_limits", "key": key, "account": account, "min_balance": minimum}


def test_two_changes_in_an_atomic_batch_after_a_payment_in_the_same_write(
    books: Ledger,
) -> None:
    # The payment's entry on "a" was given a version by the first change; the second
    # change counted it again (an account version claiming an entry it does not
    # cover): a balance finding in the audit of a history the ledger wrote itself.
    books.open_account("bank", "USD", normal="debit")
    books.open_account("a", "USD", min_balance="0")
    books.transfer("fund", debit="bank", credit="a", amount="100", asset="USD")
    outcomes = books.submit_many(
        [
            _pay("pay-1", "a", "bank", "10"),
            {
                "kind": "atomic_batch",
                "key": "limits",
                "commands": (
                    _limit("limit-1", "a", "-5"),
                    _pay("pay-2", "a", "bank", "20"),
                    _limit("limit-2", "a", "-6"),
                    _limit("limit-3", "a", "-7"),
                ),
            },
        ]
    )
    assert [o.status for o in outcomes] == ["applied", "applied"]
    state = books.balance("a")
    assert (state.posted, state.min_balance) == (Decimal("70.00"), Decimal("-7.00"))
    # opened, funded, pay-1, limit-1, pay-2, limit-2, limit-3
    assert state.version == 7
    report = audit(books.store)
    assert report.clean, report.findings


def test_no_money_request_names_a_closed_account(books: Ledger) -> None:
    # A closed account takes nothing, so a request to or from it could never be paid;
    # it was recorded all the same (an open request nobody can settle).
    books.open_account("bank", "USD", normal="debit")
    for name in ("gone", "alice"):
        books.open_account(name, "USD", min_balance="0")
    books.transfer("fund", debit="bank", credit="alice", amount="5", asset="USD")
    books.close_account("close-gone", "gone")
    for key, requester, payer in (("rq-to", "gone", "alice"), ("rq-from", "alice", "gone")):
        with pytest.raises(AccountClosed, match="'gone' is closed"):
            books.request_payment(key, requester=requester, payer=payer, amount="1", asset="USD")
        recorded = books.recorded(key)
        assert recorded is not None and recorded.code == "account_closed"
    assert audit(books.store).clean

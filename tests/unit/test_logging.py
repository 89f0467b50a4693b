"""Every write is logged with the ids needed to follow it, and nothing personal."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import structlog
from structlog.testing import capture_logs

from ledger import BalanceRuleViolated, Ledger


def test_each_write_logs_entry_key_and_accounts_but_no_amounts_or_notes(tmp_path: Path) -> None:
    with Ledger.open(f"sqlite:///{tmp_path}/l.db") as books:
        books.open_account("alice", "USD", min_balance="0")
        books.open_account("bank", "USD", normal="debit")
        previous = structlog.get_config()["wrapper_class"]
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
        with capture_logs() as logs:
            books.transfer(
                "pay-1",
                debit="bank",
                credit="alice",
                amount="12.34",
                asset="USD",
                description="secret note",
                metadata={"memo": "private memo"},
            )
            with contextlib.suppress(BalanceRuleViolated):
                books.transfer("pay-2", debit="alice", credit="bank", amount="99", asset="USD")
        structlog.configure(wrapper_class=previous)
    writes = [e for e in logs if e["event"] == "ledger.write"]
    assert len(writes) == 2
    applied, rejected = writes
    assert applied["idempotency_key"] == "pay-1"
    assert applied["entry_id"]
    assert applied["accounts"] == ["alice", "bank"]
    assert applied["status"] == "applied"
    assert rejected["code"] == "balance_rule_violated"
    assert rejected["accounts"] == ["alice", "bank"]
    text = repr(logs)
    for secret in ("secret note", "private memo", "12.34", "99"):
        assert secret not in text

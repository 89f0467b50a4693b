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


def test_a_full_run_logs_no_personal_data(tmp_path: Path, caplog: object) -> None:
    """Payment flows, read models, audit and export with personal data everywhere:
    neither structlog events nor standard logging records carry any of it."""
    from ledger.adapters.jsonl import export_lines
    from ledger.projections import BalancesView, FeedView, ProjectionRunner

    from ledger.audit import audit
    from tests.integration.test_encryption import SECRETS, write_personal_data

    previous = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    logging.getLogger().setLevel(logging.DEBUG)
    try:
        with capture_logs() as logs, Ledger.open(f"sqlite:///{tmp_path}/l.db") as books:
            write_personal_data(books)
            with contextlib.suppress(BalanceRuleViolated):
                books.transfer(
                    "too-much",
                    debit="alice",
                    credit="bob",
                    amount="1000",
                    asset="USD",
                    description="SECRET-DESC-2",
                )
            runner = ProjectionRunner.for_ledger(books, [BalancesView(), FeedView()])
            runner.catch_up()
            runner.rebuild("feed")
            runner.close()
            audit(books.store)
            b"".join(export_lines(books))
    finally:
        structlog.configure(wrapper_class=previous)
    assert any(e["event"] == "ledger.write" for e in logs)
    text = repr(logs) + repr([r.getMessage() for r in caplog.records])  # type: ignore[attr-defined]
    for secret in SECRETS:
        assert secret not in text

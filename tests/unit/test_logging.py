"""Logging: the library is quiet in its host unless the host sets logging up; every
write is logged (through the standard logging module) with the ids needed to follow
it, and nothing personal."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ledger import BalanceRuleViolated, Ledger


def ledger_records(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "ledger", {}).get("event") == event]


def test_each_write_logs_entry_key_and_accounts_but_no_amounts_or_notes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Ledger.open(f"sqlite:///{tmp_path}/l.db") as books:
        books.open_account("alice", "USD", min_balance="0")
        books.open_account("bank", "USD", normal="debit")
        with caplog.at_level(logging.INFO, logger="ledger"):
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
    applied, rejected = ledger_records(caplog, "ledger.write")
    assert applied.name.startswith("ledger.")  # under the ledger logger hierarchy
    assert applied.idempotency_key == "pay-1"  # type: ignore[attr-defined]
    assert applied.entry_id  # type: ignore[attr-defined]
    assert applied.accounts == ["alice", "bank"]  # type: ignore[attr-defined]
    assert applied.status == "applied"  # type: ignore[attr-defined]
    assert "idempotency_key='pay-1'" in applied.getMessage()
    assert rejected.code == "balance_rule_violated"  # type: ignore[attr-defined]
    # the message and every field the ledger attached (not the record's timestamps,
    # thread and process ids, where digits such as 99 turn up by chance)
    text = repr([(r.getMessage(), getattr(r, "ledger", None)) for r in caplog.records])
    for secret in ("secret note", "private memo", "12.34", "99"):
        assert secret not in text


def test_a_full_run_logs_no_personal_data(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Payment flows, read models, audit and export with personal data everywhere:
    no log record carries any of it."""
    from ledger.adapters.jsonl import export_lines
    from ledger.projections import BalancesView, FeedView, ProjectionRunner
    from ledger.projections.audit import audit
    from tests.integration.test_encryption import SECRETS, write_personal_data

    with (
        caplog.at_level(logging.DEBUG),
        Ledger.open(f"sqlite:///{tmp_path}/l.db") as books,
    ):
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
    assert ledger_records(caplog, "ledger.write")
    text = repr([(r.getMessage(), r.__dict__) for r in caplog.records])
    for secret in SECRETS:
        assert secret not in text


_SCRIPT = """
import logging, sys
{setup}
from ledger import Ledger
with Ledger.open("sqlite:///{db}") as books:
    books.open_account("a", "USD", normal="debit")
    books.open_account("b", "USD")
    for i in range(100):
        books.transfer(f"t{{i}}", debit="a", credit="b", amount="1", asset="USD")
"""


def run_script(tmp_path: Path, setup: str, name: str) -> subprocess.CompletedProcess[str]:
    script = _SCRIPT.format(setup=textwrap.dedent(setup), db=tmp_path / f"{name}.db")
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )


def test_quiet_in_its_host_unless_logging_is_set_up(tmp_path: Path) -> None:
    silent = run_script(tmp_path, "", "silent")
    assert silent.stdout == "" and silent.stderr == ""  # nothing configured: nothing shown
    shown = run_script(tmp_path, "logging.basicConfig(level=logging.INFO)", "shown")
    assert shown.stdout == ""  # stdout is the host's
    writes = [line for line in shown.stderr.splitlines() if "ledger.write" in line]
    assert len(writes) == 102  # two openings, 100 transfers: each with its fields
    assert "idempotency_key='t99'" in shown.stderr and "status='applied'" in shown.stderr
    muted = run_script(
        tmp_path,
        "logging.basicConfig(level=logging.INFO); logging.getLogger('ledger').setLevel('WARNING')",
        "muted",
    )
    assert muted.stdout == "" and "ledger.write" not in muted.stderr


def test_the_cli_logs_json_lines_to_stderr(tmp_path: Path) -> None:
    import io
    import json

    from ledger.adapters.logging import configure_logging

    stream = io.StringIO()
    handler = configure_logging("INFO", stream=stream)
    try:
        with Ledger.open(f"sqlite:///{tmp_path}/l.db") as books:
            books.open_account("a", "USD")
    finally:
        logging.getLogger("ledger").removeHandler(handler)
        logging.getLogger("ledger").setLevel(logging.NOTSET)
    (line,) = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert line["event"] == "ledger.write" and line["level"] == "info"
    assert line["idempotency_key"] == "account:a" and line["ts"].endswith("+00:00")

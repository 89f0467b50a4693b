"""Audit findings give amounts as exact decimals in the asset's scale with the asset
code, signed debits positive (never raw minor units on the account's normal side), and
carry them as structured fields in the JSON report."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from ledger import Ledger
from ledger.commands import builders
from ledger.model import entry_id_for_key
from ledger.projections.audit import AuditReport, Finding, audit, diff_read_model


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/ledger.db"
    with Ledger.open(url) as books:
        books.open_account("Assets:Bank", "USD", normal="debit")
        books.open_account("Income:Salary", "USD")
        books.open_account("shop", "USD")
        books.transfer(
            "salary", debit="Assets:Bank", credit="Income:Salary", amount="3000", asset="USD"
        )
        held = books.hold("auth", [("Assets:Bank", "-20", "USD"), ("shop", "20", "USD")])
        books.post_hold("cap", held.entry_id)
    return url


def tamper(url: str, key: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Edit an entry's stored body, as a tamperer would (hashes left as they were)."""
    conn = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None)
    try:
        rowid, state = conn.execute(
            "SELECT rowid, state FROM stored_events WHERE originator_id = ? AND topic = ?",
            (entry_id_for_key(key).hex, "ledger:Entry:1"),
        ).fetchone()
        body = orjson.loads(state)
        change(body)
        conn.execute(
            "UPDATE stored_events SET state = ? WHERE rowid = ?", (orjson.dumps(body), rowid)
        )
    finally:
        conn.close()


def run(url: str) -> AuditReport:
    with Ledger.open(url) as books:
        return audit(books.store)


def of(report: AuditReport, code: str) -> list[Finding]:
    return [f for f in report.findings if f.code == code]


def test_a_clean_trial_balance_has_signed_balances_per_account(url: str) -> None:
    report = run(url)
    assert report.clean, report.findings
    usd = report.to_json()["trial_balance"]["USD"]
    assert (usd["debits"], usd["credits"], usd["balanced"]) == ("3000.00", "3000.00", True)
    assert usd["accounts"] == {
        "Assets:Bank": {"normal": "debit", "balance": "2980.00"},
        "Income:Salary": {"normal": "credit", "balance": "-3000.00"},
        "shop": {"normal": "credit", "balance": "20.00"},
    }


def test_unbalanced_balance_and_conservation_findings_are_decimals_with_the_asset(
    url: str,
) -> None:
    def one_cent_more(body: dict[str, Any]) -> None:
        account, asset, minor = body["legs"][0]
        body["legs"][0] = [account, asset, str(int(minor) + 1)]

    tamper(url, "salary", one_cent_more)
    report = run(url)

    [unbalanced] = of(report, "unbalanced")
    assert "does not balance in USD: its legs sum to 0.01 USD (signed, debits positive)" in (
        unbalanced.message
    )
    assert (unbalanced.asset, unbalanced.expected, unbalanced.actual) == ("USD", "0.00", "0.01")

    balance = next(f for f in of(report, "balance") if f.account == "Assets:Bank")
    assert "records posted 3000.00, pending_out 0.00, pending_in 0.00 USD" in balance.message
    assert "replay gives posted 3000.01, pending_out 0.00, pending_in 0.00 USD" in (balance.message)
    assert "(signed, debits positive)" in balance.message
    assert (balance.asset, balance.expected, balance.actual) == ("USD", "3000.01", "3000.00")

    [conservation] = of(report, "conservation")
    assert conservation.message == (
        "USD does not sum to zero: debits 3000.01 USD, credits 3000.00 USD, "
        "net 0.01 USD (signed, debits positive)"
    )
    assert (conservation.expected, conservation.actual) == ("0.00", "0.01")
    assert report.to_json()["trial_balance"]["USD"]["balanced"] is False

    found = report.to_json()["findings"]
    assert {"position", "code", "stream", "message"} <= set(found[0])  # schema 1 kept
    assert any(f["account"] == "Assets:Bank" and f["actual"] == "3000.00" for f in found)


def test_a_credit_normal_balance_finding_is_signed_debits_positive(url: str) -> None:
    def one_cent_more_credit(body: dict[str, Any]) -> None:
        for index, (account, asset, minor) in enumerate(body["legs"]):
            if account == "Income:Salary":
                body["legs"][index] = [account, asset, str(int(minor) - 1)]

    tamper(url, "salary", one_cent_more_credit)
    report = run(url)
    balance = next(f for f in of(report, "balance") if f.account == "Income:Salary")
    assert "records posted -3000.00," in balance.message
    assert "replay gives posted -3000.01," in balance.message
    assert (balance.expected, balance.actual) == ("-3000.01", "-3000.00")


def test_a_capture_beyond_its_hold_says_the_amounts_in_decimals(url: str) -> None:
    def capture_more(body: dict[str, Any]) -> None:
        body["legs"] = [["Assets:Bank", "USD", "-2500"], ["shop", "USD", "2500"]]

    tamper(url, "cap", capture_more)
    [hold] = of(run(url), "hold")
    assert hold.message.startswith("capture exceeds its hold: ")
    assert "of 25.00 USD on " in hold.message and "(20.00 USD)" in hold.message
    assert hold.asset == "USD" and hold.account in {"Assets:Bank", "shop"}
    assert {hold.expected, hold.actual} <= {"-20.00", "-25.00", "20.00", "25.00"}
    assert hold.expected is not None and hold.actual is not None
    assert abs(float(hold.actual)) == 25 and abs(float(hold.expected)) == 20


def test_read_model_findings_are_signed_decimals(url: str) -> None:
    report = run(url)
    rows = {
        name: (b["posted"], b["pending_out"], b["pending_in"])
        for name, b in report.balances.items()
    }
    posted, out, inn = rows["Income:Salary"]
    rows["Income:Salary"] = (posted + 1, out, inn)  # the reviewer's tampered read model
    rows["ghost"] = (5, 0, 0)
    del rows["shop"]
    diff_read_model(report, rows)
    findings = {f.account or f.message: f for f in of(report, "read_model")}
    salary = findings["Income:Salary"]
    assert salary.message == (
        "read model has posted -3000.01, pending_out 0.00, pending_in 0.00 USD "
        "(signed, debits positive) for account 'Income:Salary'; replay gives posted "
        "-3000.00, pending_out 0.00, pending_in 0.00 USD (signed, debits positive)"
    )
    assert (salary.asset, salary.expected, salary.actual) == ("USD", "-3000.00", "-3000.01")
    assert "read model has no row for account 'shop'" in findings["shop"].message
    assert findings["shop"].actual is None and findings["shop"].expected == "20.00"
    assert any("'ghost'" in f.message for f in of(report, "read_model"))
    assert report.findings_total == 3


def test_the_write_side_refuses_a_capture_beyond_its_hold_in_decimals(tmp_path: Path) -> None:
    with Ledger.open(f"sqlite:///{tmp_path}/w.db") as books:
        books.open_account("a", "USD", normal="debit")
        books.open_account("b", "USD")
        held = books.hold("h", [("a", "-20", "USD"), ("b", "20", "USD")])
        assert held.entry_id is not None
        outcome = books.submit(
            builders.post_hold("c", held.entry_id, [("a", "-25", "USD"), ("b", "25", "USD")])
        )
    assert outcome.code == "exceeds_hold"
    assert "25.00 USD" in (outcome.message or "") and "(20.00 USD)" in (outcome.message or "")


def test_a_capture_beyond_its_hold_names_decimals_of_a_declared_asset() -> None:
    from ledger import ExceedsHold, Ledger

    with Ledger.open("sqlite:///:memory:") as books:
        books.declare_asset("PTS", 3)
        books.open_account("a", "PTS")
        books.open_account("c", "PTS")
        held = books.hold("h", [("a", "1.5", "PTS"), ("c", "-1.5", "PTS")])
        with pytest.raises(ExceedsHold, match=r"2\.000 PTS on 'a' .*\(1\.500 PTS\)"):
            books.post_hold("p", held.entry_id, [("a", "2", "PTS"), ("c", "-2", "PTS")])

"""An import validates what the file and the store already determine before anything
is applied (an account used in two assets, an unknown account without
``open_accounts``); the accounts it opens are commands of their own, so an account a
live service opens meanwhile never makes a line fail."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger import Ledger
from ledger.adapters.jsonl import ImportReport, import_lines
from ledger.errors import UnknownAccount
from ledger.projections.audit import audit
from tests.integration.test_cli import ledger


def entry(key: str, *legs: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "key": key,
        "effective_at": "2026-01-31T10:00:00Z",
        "legs": [{"account": a, "amount": m, "currency": c} for a, m, c in legs],
    }


def lines(*items: dict[str, Any]) -> Callable[[], Iterator[str]]:
    text = [json.dumps(item) + "\n" for item in items]
    return lambda: iter(text)


def exists(books: Ledger, account: str) -> bool:
    try:
        books.balance(account)
    except UnknownAccount:
        return False
    return True


def errors(report: ImportReport) -> list[tuple[int, str]]:
    return [(e.line, e.message) for e in report.errors or []]


REPRO_A = (
    entry("a1", ("cash", "10.00", "USD"), ("equity", "-10.00", "USD")),
    entry("a2", ("cash", "5.00", "EUR"), ("sales:eur", "-5.00", "EUR")),
    entry("a3", ("cash", "1.00", "USD"), ("equity", "-1.00", "USD")),
)


def test_an_account_used_in_two_assets_in_the_file_is_invalid_and_nothing_applies(
    books: Ledger,
) -> None:
    report = import_lines(books, lines(*REPRO_A))
    assert (report.invalid, report.applied, report.rejected) == (1, 0, 0)
    [(number, message)] = errors(report)
    assert number == 2
    assert message.startswith("asset_mismatch: account 'cash' holds USD (since line 1)")
    assert not any(exists(books, a) for a in ("cash", "equity", "sales:eur"))
    assert books.store.read_log(0, 10) == []


def test_skip_invalid_applies_the_other_lines_and_opens_nothing_for_the_invalid_one(
    books: Ledger,
) -> None:
    report = import_lines(books, lines(*REPRO_A), skip_invalid=True)
    assert (report.invalid, report.applied, report.rejected) == (1, 2, 0)
    assert str(books.balance("cash").posted) == "-11.00"  # credit-normal, 11.00 debited
    assert not exists(books, "sales:eur")


def test_an_account_used_in_another_asset_than_in_the_store_is_invalid(books: Ledger) -> None:
    books.open_account("cash", "USD")
    report = import_lines(
        books,
        lines(
            entry("b1", ("cash", "1.00", "USD"), ("equity", "-1.00", "USD")),
            entry("b2", ("cash", "5.00", "EUR"), ("sales:eur", "-5.00", "EUR")),
        ),
    )
    assert report.invalid == 1 and report.applied == 0
    assert errors(report)[0][0] == 2
    assert "holds USD (in the store)" in errors(report)[0][1]
    assert not exists(books, "equity")


def test_an_account_line_in_another_asset_than_its_use_is_invalid(books: Ledger) -> None:
    report = import_lines(
        books,
        lines(
            {"kind": "account", "account": "cash", "asset": "USD"},
            entry("c1", ("cash", "5.00", "EUR"), ("sales", "-5.00", "EUR")),
        ),
    )
    assert report.invalid == 1 and errors(report)[0][0] == 2
    assert not exists(books, "cash")


def test_an_unknown_account_without_open_accounts_is_invalid_and_nothing_applies(
    books: Ledger,
) -> None:
    books.open_account("cash", "USD")
    books.open_account("equity", "USD")
    report = import_lines(
        books,
        lines(
            entry("d1", ("cash", "10.00", "USD"), ("equity", "-10.00", "USD")),
            entry("d2", ("cash", "5.00", "USD"), ("typo:acct", "-5.00", "USD")),
            {"kind": "account", "account": "later", "asset": "USD"},
            entry("d3", ("cash", "1.00", "USD"), ("later", "-1.00", "USD")),
        ),
        open_accounts=False,
    )
    assert (report.invalid, report.applied) == (1, 0)
    [(number, message)] = errors(report)
    assert number == 2 and message.startswith("unknown_account: account 'typo:acct'")
    assert str(books.balance("cash").posted) == "0.00"
    assert not exists(books, "later")


def test_a_lifecycle_line_on_an_account_nothing_opens_is_invalid(books: Ledger) -> None:
    report = import_lines(
        books,
        lines(
            entry("e1", ("cash", "1.00", "USD"), ("equity", "-1.00", "USD")),
            {"kind": "freeze_account", "key": "f1", "account": "nobody", "mode": "all"},
        ),
    )
    assert report.invalid == 1 and errors(report)[0][0] == 2
    assert "unknown_account: account 'nobody'" in errors(report)[0][1]
    assert not exists(books, "cash")


def test_an_account_another_writer_opens_between_the_passes_takes_the_line(
    books: Ledger,
) -> None:
    """The import opens the accounts it needs as commands of their own (keyed
    ``account:<id>``) beside its lines: an account a live service opened meanwhile
    under its own key is used as it is, and the line applies (and replays on the next
    import), never rejected for good because its opening lost the race."""
    text = [json.dumps(entry("pay-1", ("users:1", "3.00", "USD"), ("shop", "-3.00", "USD")))]
    reads = 0

    def read() -> Iterator[str]:
        nonlocal reads
        reads += 1
        if reads == 2:  # after the check, before the apply
            books.open_account("users:1", "USD", key="signup-users:1")
        return iter(text)

    report = import_lines(books, read)
    assert (report.applied, report.rejected, report.invalid) == (1, 0, 0), errors(report)
    again = import_lines(books, lambda: iter(text))
    assert (again.applied, again.replayed, again.rejected) == (0, 1, 0)
    assert audit(books.store).clean


def test_lines_go_to_the_store_in_chunks(books: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    submit_all = books.submit_all

    def counted(commands: Any, **kwargs: Any) -> Any:
        calls.append(len(commands))
        return submit_all(commands, **kwargs)

    monkeypatch.setattr(books, "submit_all", counted)
    accounts = [{"kind": "account", "account": f"u:{i}", "asset": "USD"} for i in range(50)]
    entries = [
        entry(f"h{i}", (f"u:{i % 50}", "1.00", "USD"), (f"u:{(i + 1) % 50}", "-1.00", "USD"))
        for i in range(4000)
    ]
    report = import_lines(books, lines(*accounts, *entries))
    assert report.applied == 4050
    assert len(calls) == 3  # 2000 lines a transaction, as before

    # Accounts the import opens cost at most one more transaction each.
    calls.clear()
    opened = [
        entry(f"i{i}", (f"v:{i % 50}", "1.00", "USD"), (f"v:{(i + 1) % 50}", "-1.00", "USD"))
        for i in range(4000)
    ]
    report = import_lines(books, lines(*opened))
    assert report.applied == 4000
    assert len(calls) <= 3 + 50


def test_cli_repro_invalid_line_applies_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/w.db"
    source = tmp_path / "a.jsonl"
    source.write_text("".join(json.dumps(item) + "\n" for item in REPRO_A))
    result = ledger(url, "import", str(source), "--format", "json")
    assert result.returncode == 1
    summary = json.loads(result.stdout)
    assert (summary["applied"], summary["invalid"]) == (0, 1)
    assert summary["errors"][0]["line"] == 2
    assert "nothing applied" in result.stderr
    balances = ledger(url, "balances", "--format", "json")
    assert json.loads(balances.stdout) == {}

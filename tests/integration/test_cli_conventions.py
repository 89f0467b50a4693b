"""The CLI's books conventions at its edges: times it accepts, what a description may
show in a table, a trial balance that does not balance, input in any terminal
encoding, and the period a statement names."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

LEDGER = [sys.executable, "-c", "from ledger.adapters.cli import main; main()"]
PAY = (
    '{"key": "%s", "effective_at": "2026-01-05T10:00:00+02:00", "description": %s, '
    '"legs": [{"account": "shop", "amount": "3.00", "currency": "USD"}, '
    '{"account": "alice", "amount": "-3.00", "currency": "USD"}]}\n'
)


def run(
    db: Path, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*LEDGER, "--store", f"sqlite:///{db}", *args],
        check=False,
        capture_output=True,
        input=stdin,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def books(tmp_path: Path) -> Path:
    db = tmp_path / "books.db"
    line = PAY % ("k1", json.dumps("coffee\n  closing        99999.00 Dr\u202e"))
    done = run(db, "import", "-", stdin=line.encode())
    assert done.returncode == 0, done.stderr
    return db


@pytest.mark.parametrize(
    "when",
    [
        "2026-02-01T00:00:00",  # no zone: another instant on every machine
        "2026-W05-1",  # ISO 8601 week date
        "20260201T000000Z",  # basic format
        "2026-02-01T00:00:00.1234567Z",  # finer than a microsecond: never cut silently
        "2026-02-01T00:00:00+0200",  # offset without its colon
    ],
)
def test_times_that_are_not_rfc_3339_with_a_zone_are_usage_errors(books: Path, when: str) -> None:
    result = run(books, "balances", "--as-of", when)
    assert result.returncode == 2, result.stdout
    assert result.stderr.decode().startswith("ledger: usage: ")
    assert result.stderr.count(b"\n") == 1 and result.stdout == b""


@pytest.mark.parametrize(
    "when", ["2026-02-01", "2026-02-01T00:00:00Z", "2026-02-01t02:00:00+02:00", "2026-02-01 00:00Z"]
)
def test_rfc_3339_times_and_dates_are_taken(books: Path, when: str) -> None:
    if when.endswith(" 00:00Z"):  # no seconds: not RFC 3339
        assert run(books, "balances", "--as-of", when).returncode == 2
        return
    result = run(books, "balances", "--as-of", when, "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["shop"]["balance"] == "3.00"


def test_a_description_cannot_forge_a_line_of_a_statement(books: Path) -> None:
    human = run(books, "statement", "shop", "--from", "2026-01-01", "--to", "2026-02-01")
    assert human.returncode == 0, human.stderr
    text = human.stdout.decode()
    assert text.count("closing") == 2  # the real closing line and the escaped text
    assert "coffee\\n  closing        99999.00 Dr\\u202e" in text
    assert "\u202e" not in text
    assert text.splitlines()[-1].split() == ["closing", "3.00", "Dr"]
    data = json.loads(
        run(
            books,
            "statement",
            "shop",
            "--from",
            "2026-01-01",
            "--to",
            "2026-02-01",
            "--format",
            "json",
        ).stdout
    )
    assert data["lines"][0]["description"] == "coffee\n  closing        99999.00 Dr\u202e"
    assert (data["from"], data["to"]) == ("2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00")


def test_an_unbalanced_trial_balance_says_so_and_fails(books: Path) -> None:
    fine = run(books, "trial-balance", "--format", "json")
    assert fine.returncode == 0, fine.stderr
    usd = json.loads(fine.stdout)["USD"]
    assert usd["balanced"] is True
    assert {a["account"]: a["balance"] for a in usd["accounts"]} == {
        "alice": "-3.00",
        "shop": "3.00",
    }
    with sqlite3.connect(books) as conn:  # a read model that drifted
        conn.execute("UPDATE rm_balances SET posted = posted + 1 WHERE account = 'shop'")
    off = run(books, "trial-balance", "--format", "json")
    assert off.returncode == 1
    assert json.loads(off.stdout)["USD"]["balanced"] is False
    assert off.stderr.decode().startswith("ledger: unbalanced: ")
    assert off.stderr.count(b"\n") == 1
    human = run(books, "trial-balance")
    assert human.returncode == 1 and b"UNBALANCED" in human.stdout


def test_stdin_is_utf_8_whatever_the_terminal_says(tmp_path: Path) -> None:
    db = tmp_path / "books.db"
    line = PAY % ("k1", json.dumps("Miete f\u00fcr J\u00e4nner \u5bb6\u8cc3", ensure_ascii=False))
    latin = {"PYTHONIOENCODING": "latin-1"}
    done = run(db, "import", "-", stdin=line.encode(), env=latin)
    assert done.returncode == 0, done.stderr
    exported = [json.loads(x) for x in run(db, "export").stdout.decode().splitlines()]
    notes = [x.get("description") for x in exported]
    assert "Miete f\u00fcr J\u00e4nner \u5bb6\u8cc3" in notes
    shown = run(db, "statement", "shop", "--from", "2026-01-01", "--to", "2026-02-01", env=latin)
    assert shown.returncode == 0, shown.stderr  # written with escapes, never a traceback
    bad = run(db, "import", "-", stdin=(PAY % ("k2", '"caf\xe9"')).encode("latin-1"))
    assert bad.returncode == 1
    assert bad.stderr.decode().startswith("ledger: invalid_command: - is not UTF-8 text")
    assert bad.stderr.count(b"\n") == 1


def test_a_bad_log_level_is_a_usage_error(books: Path) -> None:
    result = run(books, "--log-level", "bogus", "balances")
    assert result.returncode == 2
    assert result.stderr.decode().startswith("ledger: usage: ")
    assert result.stderr.count(b"\n") == 1


def test_an_audit_of_an_unreadable_event_still_reports_it(books: Path, tmp_path: Path) -> None:
    """An event edited into something that is not JSON stops the read models; the
    audit still names its position, writes its report and exits 1."""
    conn = sqlite3.connect(books, isolation_level=None)
    try:
        (position,) = conn.execute(
            "SELECT max(rowid) FROM stored_events WHERE topic = 'ledger:Entry:1'"
        ).fetchone()
        conn.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (b"{not json", position))
    finally:
        conn.close()
    report = tmp_path / "report.json"
    done = run(books, "audit", "--report", str(report))
    assert done.returncode == 1, done.stderr
    assert b"Traceback" not in done.stderr
    assert b"read model was not compared" in done.stderr
    assert f"position {position}: ".encode() in done.stdout
    written = json.loads(report.read_text())
    assert any(f["position"] == position for f in written["findings"])
    assert written["read_model"]["compared"] is False
    assert f"position {position}" in written["read_model"]["reason"]

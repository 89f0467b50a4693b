"""The ``ledger`` command as a user runs it (subprocess), on SQLite and PostgreSQL:
tamper detection by the audit, a drifted read model, and the error paths."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from ledger import Ledger
from ledger.adapters.demo import run_demo

LEDGER = [sys.executable, "-c", "from ledger.adapters.cli import main; main()"]


def ledger(url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LEDGER, "--store", url, *args],
        check=False,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
    )


def seeded(url: str) -> None:
    with Ledger.open(url) as books:
        run_demo(books, io.StringIO())


class Raw:
    """Raw SQL on the event table, bypassing the ledger (what a tamperer would do)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pg = url.startswith("postgresql")
        self.pos = "notification_id" if self.pg else "rowid"

    def rows(self) -> list[tuple[int, str, bytes]]:
        sql = f"SELECT {self.pos}, topic, state FROM stored_events ORDER BY {self.pos}"
        return [(int(p), t, bytes(s)) for p, t, s in self._run(sql, fetch=True)]

    def _run(self, sql: str, params: tuple[Any, ...] = (), *, fetch: bool = False) -> list[Any]:
        if self.pg:
            with psycopg.connect(self.url, autocommit=True) as conn:
                cur = conn.execute(sql.replace("?", "%s"), params)
                return cur.fetchall() if fetch else []
        conn = sqlite3.connect(self.url[len("sqlite:///") :], isolation_level=None)
        try:
            cur = conn.execute(sql, params)
            return cur.fetchall() if fetch else []
        finally:
            conn.close()

    def execute(self, sql: str, *params: Any) -> None:
        self._run(sql, params)

    def entry(self, nth: int = 3) -> tuple[int, bytes]:
        entries = [(p, s) for p, t, s in self.rows() if t == "ledger:Entry:1"]
        return entries[nth]


def edit(raw: Raw) -> int:
    position, state = raw.entry()
    body = orjson.loads(state)
    body["legs"][0][2] = str(int(body["legs"][0][2]) + 100)
    body["legs"][1][2] = str(int(body["legs"][1][2]) - 100)  # still balanced
    raw.execute(
        f"UPDATE stored_events SET state = ? WHERE {raw.pos} = ?", orjson.dumps(body), position
    )
    return position


def delete(raw: Raw) -> int:
    position, _ = raw.entry()
    raw.execute(f"DELETE FROM stored_events WHERE {raw.pos} = ?", position)
    return position


def reorder(raw: Raw) -> int:
    rows = raw.rows()
    changed = [p for p, t, _ in rows if t == "ledger:AccountChanged:1"]
    first, second = changed[2], changed[2] + 1
    if raw.pg:
        raw.execute(
            "UPDATE stored_events SET notification_id = -1 WHERE notification_id = ?", first
        )
        raw.execute(
            "UPDATE stored_events SET notification_id = ? WHERE notification_id = ?", first, second
        )
        raw.execute(
            "UPDATE stored_events SET notification_id = ? WHERE notification_id = -1", second
        )
    else:
        raw.execute("UPDATE stored_events SET rowid = -1 WHERE rowid = ?", first)
        raw.execute("UPDATE stored_events SET rowid = ? WHERE rowid = ?", first, second)
        raw.execute("UPDATE stored_events SET rowid = ? WHERE rowid = -1", second)
    return first


def insert(raw: Raw) -> int:
    _, state = raw.entry()
    body = orjson.loads(state)
    body["key"] = "forged"
    stream = uuid.uuid4()
    value = stream if raw.pg else stream.hex
    raw.execute(
        "INSERT INTO stored_events (originator_id, originator_version, topic, state)"
        " VALUES (?, 1, ?, ?)",
        value,
        "ledger:Entry:1",
        orjson.dumps(body),
    )
    return raw.rows()[-1][0]


@pytest.mark.parametrize("tamper", [edit, delete, reorder, insert], ids=lambda f: f.__name__)
def test_case_17_tamper_evidence_audit_names_the_position(
    store_url: str, tamper: Any, tmp_path: Path
) -> None:
    seeded(store_url)
    clean = ledger(store_url, "audit")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    position = tamper(Raw(store_url))
    report_path = tmp_path / "report.json"
    result = ledger(store_url, "audit", "--report", str(report_path))
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(report_path.read_text())
    assert report["verdict"] == "findings"
    positions = sorted(f["position"] for f in report["findings"])
    assert positions, report
    assert any(position <= p <= position + 12 for p in positions), (position, report["findings"])
    assert f"position {positions[0]}" in result.stdout


def test_a_drifted_read_model_row_is_a_mismatch(store_url: str) -> None:
    seeded(store_url)
    assert ledger(store_url, "audit").returncode == 0
    raw = Raw(store_url)
    raw.execute(
        "UPDATE rm_balances SET posted = ? WHERE account = ?",
        "1" if not raw.pg else 1,
        "users:bob:wallet",
    )
    result = ledger(store_url, "audit", "--format", "json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert [f["code"] for f in report["findings"]] == ["read_model"]
    assert "users:bob:wallet" in report["findings"][0]["message"]


def test_audit_json_report_schema(store_url: str) -> None:
    seeded(store_url)
    result = ledger(store_url, "audit", "--format", "json")
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert report["schema"] == "ledger-audit/1"
    assert report["verdict"] == "clean"
    assert set(report["counts"]) == {"events", "entries", "accounts", "findings"}
    assert report["trial_balance"]["USD"]["debits"] == report["trial_balance"]["USD"]["credits"]


def test_cli_reports_and_reads(store_url: str) -> None:
    seeded(store_url)
    balances = ledger(store_url, "balances", "--account", "users:", "--format", "json")
    assert balances.returncode == 0, balances.stderr
    data = json.loads(balances.stdout)
    assert set(data) == {"users:alice:wallet", "users:bob:wallet", "users:carol:wallet"}
    status = ledger(store_url, "projections", "status", "--format", "json")
    assert json.loads(status.stdout)["balances"]["lag_events"] == 0
    assert ledger(store_url, "projections", "rebuild").returncode == 0
    stmt = ledger(
        store_url,
        "statement",
        "users:alice:wallet",
        "--from",
        "2020-01-01",
        "--to",
        "2100-01-01",
        "--format",
        "json",
    )
    assert stmt.returncode == 0, stmt.stderr
    assert json.loads(stmt.stdout)["closing"] == data["users:alice:wallet"]["balance"]


def test_projections_follow_keeps_views_current_until_sigterm(store_url: str) -> None:
    import signal
    import time

    with Ledger.open(store_url) as books:
        books.open_account("bank", "USD", normal="debit")
        books.open_account("w", "USD")
        worker = subprocess.Popen(
            [*LEDGER, "--store", store_url, "projections", "follow", "--poll", "0.05"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            books.transfer("f1", debit="bank", credit="w", amount="5", asset="USD")
            deadline = time.monotonic() + 60
            while True:
                status = ledger(store_url, "projections", "status", "--format", "json")
                lag = json.loads(status.stdout)
                if all(v["lag_events"] == 0 for v in lag.values()) and lag["balances"]["position"]:
                    break
                assert time.monotonic() < deadline, lag
                time.sleep(0.1)
        finally:
            worker.send_signal(signal.SIGTERM)
            out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert out == "" and "Traceback" not in err
    balances = ledger(store_url, "balances", "--account", "w", "--format", "json")
    assert json.loads(balances.stdout)["w"] == {
        "asset": "USD",
        "normal": "credit",
        "balance": "-5.00",
    }


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["no-such-command"], 2, "No such command"),
        (["audit", "--position", "3", "--until", "2026-01-01"], 2, "either --until or --position"),
        (["asset", "add", "PTS", "--scale", "40"], 2, "--scale"),
        (["statement", "nobody", "--from", "2026-01-01", "--to", "2026-02-01"], 1, "nobody"),
        (["balances", "--as-of", "0001-01-01T00:00:00+14:00"], 2, "out of range"),
        (["statement", "w", "--from", "2026-12-31", "--to", "2026-01-01"], 2, "after --to"),
        (["export", "/nonexistent-directory/out.jsonl"], 1, "io_error"),
        (["import", "/nonexistent-directory/in.jsonl"], 1, "io_error: no such file"),
        (["trial-balance", "--as-of", "9999-12-31T23:59:59-14:00"], 2, "out of range"),
    ],
)
def test_cli_errors_are_one_line_and_non_zero(
    store_url: str, args: list[str], code: int, text: str
) -> None:
    assert ledger(store_url, "init").returncode == 0
    result = ledger(store_url, *args)
    assert result.returncode == code, result.stdout + result.stderr
    assert text in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("ledger: ")
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["audit"],
        ["balances", "--format", "json"],
        ["trial-balance"],
        ["export"],
        ["statement", "w", "--from", "2026-01-01", "--to", "2026-02-01"],
        ["projections", "status"],
    ],
)
def test_reads_of_a_mistyped_sqlite_path_refuse_and_create_nothing(
    tmp_path: Path, args: list[str]
) -> None:
    missing = tmp_path / "typo.db"
    result = ledger(f"sqlite:///{missing}", *args)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("ledger: store_unavailable: no ledger at ")
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_a_sqlite_url_with_parameters_names_its_file(tmp_path: Path) -> None:
    """``?mode=rw`` (SQLite's URI parameters) reads the file the path names; a missing
    one is still refused, with or without parameters."""
    books = tmp_path / "books.db"
    seeded(f"sqlite:///{books}")
    existing = ledger(f"sqlite:///{books}?mode=rw", "balances", "--format", "json")
    assert existing.returncode == 0, existing.stderr
    assert json.loads(existing.stdout)  # the demo's accounts, read without writing
    for url in (f"sqlite:///{tmp_path}/typo.db?mode=rw", f"sqlite:///file:{tmp_path}/typo.db"):
        missing = ledger(url, "balances")
        assert missing.returncode == 1 and "no ledger at" in missing.stderr, url
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("typo")) == []


def test_output_that_cannot_be_written_is_one_line(store_url: str, tmp_path: Path) -> None:
    seeded(store_url)
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [*LEDGER, "--store", store_url, "balances", "--format", "json"],
            check=False,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    assert result.stderr.startswith("ledger: io_error:") and result.stderr.count("\n") == 1


def test_export_leaves_no_partial_file(store_url: str, tmp_path: Path) -> None:
    seeded(store_url)
    out = tmp_path / "out"
    out.mkdir()
    target = out / "entries.jsonl"
    assert ledger(store_url, "export", str(target)).returncode == 0
    assert target.read_text().count("\n") > 10
    assert [p.name for p in out.iterdir()] == ["entries.jsonl"]  # no temporary left


@pytest.mark.parametrize(
    "url",
    [
        "mysql://x/y",
        "sqlite:///",
        "sqlite:////nonexistent-directory/x.db",
        "sqlite:////tmp",  # a directory
        "postgresql://127.0.0.1:1/none",
    ],
)
def test_bad_or_unreachable_store_is_one_line(url: str) -> None:
    result = ledger(url, "init")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("ledger: ")


COMMANDS = [
    [],
    ["init"],
    ["demo"],
    ["asset"],
    ["asset", "add"],
    ["import"],
    ["export"],
    ["balances"],
    ["statement"],
    ["audit"],
    ["projections"],
    ["projections", "status"],
    ["projections", "rebuild"],
    ["projections", "follow"],
    ["trial-balance"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "ledger")
def test_every_command_has_help(command: list[str], tmp_path: Path) -> None:
    result = ledger(f"sqlite:///{tmp_path}/h.db", *command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_the_module_runs_as_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ledger.adapters.cli", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "Usage:" in result.stdout


def test_demo_runs_audits_and_reports_clean(store_url: str) -> None:
    result = ledger(store_url, "demo")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "balanced" in result.stdout
    assert "audit: CLEAN" in result.stdout


def test_audit_until_a_time_covers_the_writes_recorded_by_then(store_url: str) -> None:
    seeded(store_url)
    with Ledger.open(store_url) as books:
        total = books.store.max_position()
    past = ledger(store_url, "audit", "--until", "2000-01-01", "--format", "json")
    assert past.returncode == 0, past.stderr
    assert json.loads(past.stdout)["counts"]["events"] == 0
    future = ledger(store_url, "audit", "--until", "2999-01-01", "--format", "json")
    assert json.loads(future.stdout)["position"] == total

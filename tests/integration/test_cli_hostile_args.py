"""Hostile arguments at the CLI's edges: each is one line on stderr with a non-zero
exit, never a traceback, a busy loop or a file left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LEDGER = [sys.executable, "-c", "from ledger.adapters.cli import main; main()"]


def run(
    db: Path, *args: str, cwd: Path | None = None, timeout_s: float = 120
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*LEDGER, "--store", f"sqlite:///{db}", *args],
        check=False,
        capture_output=True,
        timeout=timeout_s,
        cwd=cwd,
        env=dict(os.environ),
    )


@pytest.fixture
def books(tmp_path: Path) -> Path:
    db = tmp_path / "books.db"
    done = run(db, "init")
    assert done.returncode == 0, done.stderr
    return db


def assert_usage_error(result: subprocess.CompletedProcess[bytes]) -> str:
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert err.startswith("ledger: usage: ") and err.count("\n") == 1, err
    assert result.stdout == b""
    return err


@pytest.mark.parametrize("servers", ["host:notaport", ":", "[::1", "", "127.0.0.1:0", "h:70000"])
def test_a_malformed_kafka_address_is_a_usage_error(books: Path, servers: str) -> None:
    result = run(books, "stream", "--kafka", servers, "--topic", "t", "--once")
    assert "--kafka" in assert_usage_error(result)


def test_an_empty_topic_is_a_usage_error(books: Path) -> None:
    result = run(books, "stream", "--kafka", "127.0.0.1:1", "--topic", "", "--once")
    assert "--topic" in assert_usage_error(result)


@pytest.mark.parametrize("option", ["--poll", "--linger"])
def test_not_a_number_is_no_interval_for_the_follower(books: Path, option: str) -> None:
    # nan passes every range comparison; as a poll it made the follower spin a core
    result = run(books, "projections", "follow", option, "nan", timeout_s=30)
    assert option in assert_usage_error(result)


def test_an_empty_export_target_is_a_usage_error_and_leaves_no_file(
    books: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    result = run(books, "export", "", cwd=work)
    assert_usage_error(result)
    assert list(work.iterdir()) == []  # no temporary file with the books in it


def test_an_empty_report_path_is_a_usage_error(books: Path) -> None:
    assert "--report" in assert_usage_error(run(books, "audit", "--report", ""))


def test_an_import_from_a_device_says_what_is_wrong(books: Path) -> None:
    result = run(books, "import", os.devnull)
    err = result.stderr.decode()
    assert result.returncode == 1 and err.count("\n") == 1, err
    assert err.startswith("ledger: io_error: not a regular file"), err
    assert "use - " in err


@pytest.mark.parametrize("bound", [["--position", str(10**30)], ["--until", "9999-12-31"]])
def test_an_audit_bound_past_the_end_of_the_log_replays_the_log(
    books: Path, bound: list[str]
) -> None:
    result = run(books, "audit", *bound, "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["position"] == 0  # the end of the (empty) log
    human = run(books, "audit", *bound)
    assert human.returncode == 0 and human.stderr == b"", human.stderr  # no progress bar


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        (["balances"], "--account PREFIX"),
        (["import"], "Usage: ledger import [OPTIONS] FILE"),
        (["export"], "Usage: ledger export [OPTIONS] [FILE]"),
    ],
)
def test_the_help_names_the_arguments_as_its_text_does(
    books: Path, command: list[str], shown: str
) -> None:
    result = run(books, *command, "--help")
    assert result.returncode == 0 and shown in result.stdout.decode(), result.stdout

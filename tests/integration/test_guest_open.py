"""Opening a ledger with a refused option leaves nothing behind in the host's process:
the option is refused before anything is opened (no file, no connection, no thread),
also while the host keeps the error (an error reporter holds its traceback)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ledger import Ledger

_BAD_LIMITS: list[dict[str, Any]] = [
    {"group_commands_max": 0},
    {"queue_commands_max": -1},
    {"group_commands_max": "10"},
    {"queue_commands_max": 2.5},
    {"group_commands_max": True},
]


@pytest.mark.parametrize("options", _BAD_LIMITS)
def test_a_bad_limit_is_refused_before_the_sqlite_file_is_made(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    path = tmp_path / "books.db"
    with pytest.raises(ValueError, match="at least 1"):
        Ledger.open(f"sqlite:///{path}", **options)
    assert not path.exists()


@pytest.mark.postgres
@pytest.mark.parametrize("options", _BAD_LIMITS[:3])
def test_a_bad_limit_leaves_no_connection_or_thread_while_its_error_is_kept(
    pg_url: str, options: dict[str, Any]
) -> None:
    name = "ledger-guest-refused-option"
    threads = set(threading.enumerate())
    kept: list[BaseException] = []
    try:
        Ledger.open(f"{pg_url}?application_name={name}", **options)
    except ValueError as e:
        kept.append(e)  # its traceback holds the frames of Ledger.open
    assert kept and "at least 1" in str(kept[0])
    assert set(threading.enumerate()) <= threads  # no pool scheduler or workers
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
        ).fetchone()
    assert row == (0,)


@pytest.mark.parametrize("keyring", ["k1:" + "A" * 44, b"\0" * 32, {"k1": "A" * 44}])
def test_a_keyring_that_is_no_keyring_is_refused_before_the_file_is_made(
    tmp_path: Path, keyring: Any
) -> None:
    """A LEDGER_KEYS string (or raw key) given as the keyring was accepted, and every
    write then failed with AttributeError ('str' object has no attribute 'seal')."""
    path = tmp_path / "books.db"
    with pytest.raises(TypeError, match="keyring"):
        Ledger.open(f"sqlite:///{path}", keyring=keyring)
    assert not path.exists()

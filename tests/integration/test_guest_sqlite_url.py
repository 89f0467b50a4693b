"""An SQLite URL's parameters reach SQLite: ``sqlite:///books.db?mode=ro`` opens
``books.db`` read-only. They used to become part of the file's name: a new, empty,
writable ``books.db?mode=ro`` was made and written to, and the option ignored."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest

from ledger import Ledger, StoreError
from ledger.errors import StoreUnavailable
from ledger.projections import BalancesView, ProjectionRunner


@pytest.mark.parametrize("name", ["books.db", "odd name %41 #1.db"])
def test_url_parameters_apply_to_the_file_the_path_names(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with Ledger.open(f"sqlite:///{path}") as books:
        books.open_account("bank", "USD", normal="debit")
        books.open_account("alice", "USD")
        books.transfer("t1", debit="bank", credit="alice", amount="5", asset="USD")

    with Ledger.open(f"sqlite:///{path}?mode=ro", create_schema=False) as books:
        assert books.balance("alice").available == Decimal("5")  # the same file

    # no file named after the URL (only SQLite's own -wal and -shm beside the database)
    assert {p.name.removesuffix("-wal").removesuffix("-shm") for p in tmp_path.iterdir()} == {name}


def test_a_read_only_url_of_a_missing_file_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unable to open"):
        Ledger.open(f"sqlite:///{tmp_path}/missing.db?mode=ro")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", ["sqlite://books.db", "sqlite:books.db", "sqlite:/books.db"])
def test_an_sqlite_url_with_too_few_slashes_says_so(url: str) -> None:
    """It was 'unsupported store URL scheme 'sqlite'', which is supported."""
    with pytest.raises(StoreError, match="three slashes") as raised:
        Ledger.open(url)
    assert "unsupported" not in str(raised.value)


def test_a_write_to_a_read_only_sqlite_database_fails_at_once(tmp_path: Path) -> None:
    path = tmp_path / "books.db"
    with Ledger.open(f"sqlite:///{path}") as books:
        books.open_account("bank", "USD", normal="debit")
        books.open_account("w", "USD")
    with Ledger.open(f"sqlite:///{path}?mode=ro", create_schema=False) as books:
        assert books.balance("w").posted == 0  # reads work
        started = time.monotonic()
        with pytest.raises(StoreError, match="read-only") as refused:
            books.transfer("k", debit="bank", credit="w", amount="1", asset="USD")
        assert not isinstance(refused.value, StoreUnavailable)  # not retried as busy
        assert time.monotonic() - started < 5


def test_read_models_of_a_read_only_sqlite_database_fail_at_once(tmp_path: Path) -> None:
    """A projection runner on a read-only URL is refused (StoreError), not told the
    database is busy (StoreUnavailable), which ``follow`` retries forever."""
    path = tmp_path / "books.db"
    with Ledger.open(f"sqlite:///{path}") as books:
        books.open_account("bank", "USD", normal="debit")
    with Ledger.open(f"sqlite:///{path}?mode=ro", create_schema=False) as books:
        with pytest.raises(StoreError, match="read-only") as refused:
            ProjectionRunner.for_ledger(books, [BalancesView()])
        assert not isinstance(refused.value, StoreUnavailable)

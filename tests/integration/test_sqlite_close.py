"""Closing an SQLite store from the thread that holds one of its connections (inside
``exclusive()``): close must not wait on the caller's own connection (it is back only
after close returns), and the pool is closed once the last connection is back. A close
in a forked child: see tests/contract/test_closed_store.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.adapters import sqlite_store
from ledger.errors import StoreError


def test_a_close_from_inside_exclusive_returns_at_once_and_closes_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "_LOCK_TIMEOUT_S", 2)  # a wait would take 7 s
    books = Ledger.open(f"sqlite:///{tmp_path / 'l.db'}")
    books.open_account("cash", "USD", normal="debit")
    store = books.store
    started = time.monotonic()
    with store.exclusive():  # what was begun finishes; the pool closes after it
        store.close()
        assert time.monotonic() - started < 1.0  # not waiting for its own connection
        assert not store.datastore.pool.closed
    assert store.datastore.pool.closed  # closed once that connection was back
    with pytest.raises(StoreError):
        store.max_position()


def test_a_deferred_close_closes_the_pool_when_the_last_connection_is_back(
    tmp_path: Path,
) -> None:
    books = Ledger.open(f"sqlite:///{tmp_path / 'l.db'}")
    datastore = books.store.datastore
    first = datastore.get_connection(commit=False)
    second = datastore.get_connection(commit=False)
    first.__enter__()
    second.__enter__()
    books.close()  # two connections of this thread in use: closed when both are back
    assert not datastore.pool.closed
    first.__exit__(None, None, None)
    assert not datastore.pool.closed  # one is still in use
    second.__exit__(None, None, None)
    assert datastore.pool.closed

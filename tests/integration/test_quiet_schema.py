"""A guest in the database server's log: opening a ledger on a schema that exists runs
no statement that fails (each failure is an ERROR line in the server's log, at every
start of every process, where operators' alerts look)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
import pytest

from ledger import AsyncLedger, Ledger
from ledger.adapters.urls import open_store
from ledger.store import AppendConflict, WriteBatch, stored_event

pytestmark = pytest.mark.postgres


@pytest.fixture
def failed_statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Statements the server refused from now on (every statement of psycopg's
    cursors, which the ledger's schema setup uses)."""
    failed: list[str] = []
    real = psycopg.Cursor.execute

    def spy(self: psycopg.Cursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return real(self, query, *args, **kwargs)
        except psycopg.Error as e:
            failed.append(f"{e.sqlstate}: {e}")
            raise

    monkeypatch.setattr(psycopg.Cursor, "execute", spy)
    return failed


def test_opening_an_existing_schema_runs_no_failing_statement(
    pg_url: str, failed_statements: list[str]
) -> None:
    # pg_url's schema exists (the fixture opened a ledger on it).
    for n in range(2):
        with Ledger.open(pg_url) as books:
            books.open_account(f"bank{n}", "USD", normal="debit")
    assert failed_statements == []


def test_the_schema_is_still_created_from_nothing_and_completed(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS stored_events, ledger_keys, ledger_open_holds")
        conn.execute("DROP TYPE IF EXISTS stored_event_uuid CASCADE")
    with Ledger.open(pg_url) as books:
        books.open_account("bank", "USD", normal="debit")
    # The type exists and the event table went missing: opening completes the schema.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE stored_events")
    with Ledger.open(pg_url) as books:
        books.open_account("bank2", "USD", normal="debit")
        assert books.balance("bank2").posted == 0


def test_the_async_ledger_opens_quietly_too(pg_url: str, failed_statements: list[str]) -> None:
    async def run() -> None:
        async with await AsyncLedger.open(pg_url) as books:
            await books.open_account("bank", "USD", normal="debit")

    asyncio.run(run())
    assert failed_statements == []


def test_a_lost_race_to_create_a_stream_is_refused_without_a_server_error(
    pg_url: str, failed_statements: list[str]
) -> None:
    """Two writers creating the same stream (an idempotency key sent to two
    instances, one account opened twice): the append function answers the loser with
    false, checked under its lock, not with a primary-key violation in the log."""
    store = open_store(pg_url)
    try:
        created = uuid.uuid4()
        for attempt in range(2):
            batch = WriteBatch()
            batch.events.append(stored_event(created, 1, "test.opened", b'{"n":0}'))
            batch.expect_versions[created] = 0
            if attempt == 0:
                store.append(batch)
            else:
                with pytest.raises(AppendConflict):
                    store.append(batch)
    finally:
        store.close()
    assert failed_statements == []

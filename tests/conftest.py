"""Shared fixtures: a fresh store per test on SQLite and, when configured, PostgreSQL.

PostgreSQL tests use ``LEDGER_TEST_POSTGRES_URL`` (``.ci/postgres.sh start`` prints
one). Without it they are skipped locally, but fail under ``CI=true`` so that CI can
never pass by skipping them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import psycopg
import pytest
import structlog

from ledger import Ledger

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

PG_URL = os.environ.get("LEDGER_TEST_POSTGRES_URL", "")
LEDGER_TABLES = ("stored_events", "ledger_keys", "ledger_open_holds")


def require_postgres() -> str:
    """The test PostgreSQL URL, or skip (fail under CI) when none is configured."""
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("LEDGER_TEST_POSTGRES_URL is not set under CI")
        pytest.skip("LEDGER_TEST_POSTGRES_URL not set")
    return PG_URL


def reset_postgres(url: str) -> None:
    """Empty the ledger's tables (keeping the schema) so each test starts clean."""
    with psycopg.connect(url, autocommit=True) as conn:
        existing = {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        }
        tables = [t for t in existing if t in LEDGER_TABLES or t.startswith("ledger_")]
        if tables:
            conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> str:
    """A URL of an empty store, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    url = require_postgres()
    Ledger.open(url).close()
    reset_postgres(url)
    return url


@pytest.fixture
def books(store_url: str) -> Iterator[Ledger]:
    """An open ledger on an empty store (each backend)."""
    with Ledger.open(store_url) as ledger:
        yield ledger

"""Shared fixtures: a fresh store per test on SQLite and, when configured, PostgreSQL.

PostgreSQL tests use ``LEDGER_TEST_POSTGRES_URL`` (``.ci/postgres.sh start`` prints
one). Without it they are skipped locally, but fail under ``CI=true`` so that CI can
never pass by skipping them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import psycopg
import pytest

from ledger import Ledger
from ledger.sealing import in_use

PG_URL = os.environ.get("LEDGER_TEST_POSTGRES_URL", "")


@pytest.fixture(autouse=True)
def _no_sealer_left_in_use() -> Iterator[None]:
    """A keyring belongs to the object given it: none is ever left in use behind a
    test's back (ledger.sealing)."""
    assert in_use() is None
    yield
    assert in_use() is None


LEDGER_TABLES = ("stored_events", "ledger_keys", "ledger_open_holds")


def require_postgres(purpose: str = "") -> str:
    """A PostgreSQL database for this test worker, or skip (fail under CI) without one.

    Each pytest-xdist worker gets its own database (``<name>_gw0``...), created on first
    use, so parallel workers never truncate each other's tables. A ``purpose`` gives a
    test module a database of its own (``<name>_gw0_<purpose>``), for servers that
    outlive one test.
    """
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("LEDGER_TEST_POSTGRES_URL is not set under CI")
        pytest.skip("LEDGER_TEST_POSTGRES_URL not set")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker and not purpose:
        return PG_URL
    base, _, dbname = PG_URL.rpartition("/")
    name = "_".join(part for part in (dbname, worker, purpose) if part)
    if name not in _CREATED:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
        _CREATED.add(name)
    return f"{base}/{name}"


_CREATED: set[str] = set()


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
        views = [t for t in existing if t.startswith("rm_")]
        if tables:
            conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
        if views:  # read models are derived: drop them, so schema changes apply
            conn.execute(f"DROP TABLE {', '.join(views)}")


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
def pg_url() -> str:
    """The URL of an empty PostgreSQL store (for tests of PostgreSQL alone)."""
    url = require_postgres()
    Ledger.open(url).close()
    reset_postgres(url)
    return url


@pytest.fixture
def books(store_url: str) -> Iterator[Ledger]:
    """An open ledger on an empty store (each backend)."""
    with Ledger.open(store_url) as ledger:
        yield ledger


@pytest.fixture(params=["asyncio", "uvloop"])
def each_event_loop(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once on asyncio's own event loop and once on uvloop's (what
    ``uvicorn[standard]`` runs): ``asyncio.run`` and ``asyncio.new_event_loop`` make
    loops of the chosen kind."""
    if request.param == "asyncio":
        yield request.param
        return
    uvloop = pytest.importorskip("uvloop")
    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        yield request.param
    finally:
        asyncio.set_event_loop_policy(previous)

"""Every session of the ledger ended by the server at once (a restart, a failover, an
idle-session timeout of the server or of a proxy) while the ledger is idle: its pool
still holds the dead sessions, which it cannot know are gone. Against the real
server:

* a read right after is answered (the dead session is replaced, the read runs again
  on a live one), never ``StoreUnavailable`` while the server is up;
* the first write after it costs at most one failed attempt through the pool, not
  one per dead pooled session with a growing back-off (every caller of the ledger
  waits on that write).
"""

from __future__ import annotations

import logging
from decimal import Decimal

import psycopg
import pytest

from ledger import Ledger
from ledger.projections.audit import audit
from tests.contract.test_online_group_commit import WALLETS, payment, setup, total

pytestmark = pytest.mark.postgres


@pytest.fixture
def url(pg_url: str) -> str:
    return pg_url


def _end_every_session(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _fill_pool(books: Ledger) -> None:
    """Have the pool hold its largest number of idle sessions."""
    pool = books.store.datastore.pool  # type: ignore[attr-defined]
    held = [pool.getconn() for _ in range(pool.max_size)]
    for conn in held:
        pool.putconn(conn)


def test_reads_after_every_session_ended_are_answered(url: str) -> None:
    with Ledger.open(url) as books:
        setup(books)
        _fill_pool(books)
        assert _end_every_session(url) >= 3
        for _ in range(6):
            assert books.balance("w0").posted == Decimal(100)
        assert books.recorded("fund-1") is not None
        assert books.due_expiries() == []
        assert total(books) == Decimal(100 * WALLETS)


def test_a_write_after_every_session_ended_fails_at_most_one_attempt(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with Ledger.open(url) as books:
        setup(books)
        _fill_pool(books)
        assert _end_every_session(url) >= 3
        with caplog.at_level(logging.DEBUG, logger="ledger"):
            outcome = books.submit(payment("after-restart", 0, 1))
        assert outcome.ok and not outcome.replayed
        retries = [r for r in caplog.records if r.getMessage().startswith("ledger.retry")]
        assert books.group_commit_stats.redone == 1  # the committer's own session was dead
        assert len(retries) <= 1
        assert books.submit(payment("after-restart", 0, 1)).replayed
        assert books.balance("w1").posted == Decimal(101)
        assert audit(books.store).clean

"""A read-model connection lost under a projection runner (a server restart, a
failover, an administrator ending sessions): the runner's next attempt makes a new
connection, so a follower that retries ``StoreUnavailable`` recovers instead of
failing on the dead connection forever; readers recover the same way."""

from __future__ import annotations

import psycopg
import pytest

from ledger import Ledger
from ledger.errors import StoreUnavailable
from ledger.projections import BalancesView, ProjectionRunner

pytestmark = pytest.mark.postgres


def end_other_sessions(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def caught_up(runner: ProjectionRunner, attempts: int = 3) -> None:
    """What ``follow`` does: retry a catch-up that found the store unavailable."""
    for attempt in range(attempts):
        try:
            runner.catch_up()
            return
        except StoreUnavailable:
            if attempt == attempts - 1:
                raise


def test_a_runner_recovers_from_a_lost_read_model_connection(pg_url: str) -> None:
    with Ledger.open(pg_url) as books:
        books.open_account("bank", "USD", normal="debit")
        books.open_account("alice", "USD")
        books.transfer("t1", debit="bank", credit="alice", amount="5", asset="USD")
        runner = ProjectionRunner.for_ledger(books, [BalancesView()])
        try:
            runner.catch_up()
            for n in range(2, 5):
                end_other_sessions(pg_url)
                books.transfer(f"t{n}", debit="bank", credit="alice", amount="5", asset="USD")
                caught_up(runner)
                with runner.views.snapshot() as w:
                    row = BalancesView.balance(w, "alice")
                assert row is not None and row.signed == -5 * n
            end_other_sessions(pg_url)
            # the reader learns of the loss once
            with pytest.raises(StoreUnavailable), runner.views.snapshot() as w:
                BalancesView.balance(w, "alice")
            with runner.views.snapshot() as w:  # and its next read reconnects
                row = BalancesView.balance(w, "alice")
            assert row is not None and row.signed == -20
        finally:
            runner.close()

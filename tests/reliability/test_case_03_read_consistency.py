"""Reliability case 3, read consistency: while a writer process posts payments and a
projector follows the log, readers take snapshots, of the write side (every account
stream read in one query) and of the balances read model (one snapshot transaction):
every snapshot sums to the total (zero over all accounts, as the books must)."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from ledger import Ledger, events
from ledger.model import account_stream_id
from ledger.projections import BalancesView, ProjectionRunner
from tests.conftest import require_postgres
from tests.integration.test_projector_faults import USERS, fresh, writer_main

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

NAMES = ["bank", *(f"u{u}" for u in range(USERS))]


def write_side_total(books: Ledger) -> int:
    ids = [account_stream_id(name) for name in NAMES]
    loaded = books.store.load_streams(ids)  # one statement: one snapshot
    total = 0
    for first, last in loaded.values():
        state = events.account_state_from(first, last)
        total += state.sign * state.posted  # debits minus credits
    return total


def read_model_total(runner: ProjectionRunner) -> tuple[int, int]:
    with runner.views.snapshot() as w:
        rows = w.query("SELECT sign, posted FROM rm_balances")
    return sum(int(sign) * int(posted) for sign, posted in rows), len(rows)


def test_every_snapshot_sums_to_the_total() -> None:
    url = require_postgres()
    fresh(url)
    proc = multiprocessing.get_context("spawn").Process(target=writer_main, args=(url, 3000))
    proc.start()
    stop = threading.Event()
    with Ledger.open(url, create_schema=False) as books:
        projector = ProjectionRunner.for_ledger(books, [BalancesView()])
        follower = threading.Thread(target=projector.follow, args=(stop,), kwargs={"poll_s": 0.01})
        follower.start()
        readers = ProjectionRunner.for_ledger(books, [BalancesView()])
        seen_write, seen_read = 0, 0
        try:
            while proc.is_alive() or seen_read < 20:
                assert write_side_total(books) == 0
                seen_write += 1
                total, rows = read_model_total(readers)
                assert total == 0
                seen_read += rows > 0
                time.sleep(0.005)
        finally:
            stop.set()
            follower.join()
            proc.join()
        assert proc.exitcode == 0
        assert seen_write > 50 and seen_read > 20
        readers.close()
        projector.close()

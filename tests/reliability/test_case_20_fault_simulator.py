"""Reliability case 20, seeded fault simulation (see tests/reliability/simulator.py):
2,000 seeds in memory, fewer on an SQLite file and on PostgreSQL; each seed injects
conflicts, lost acknowledgements, crashes before and after commit with restarts and
retries, and projector crashes, then checks model, store, views and every key's
outcome agree. A planted bug (recorded outcomes ignored on retry) is caught, and a
seed replays exactly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import require_postgres, reset_postgres
from tests.reliability.simulator import run_seed

SEEDS = int(os.environ.get("LEDGER_SIM_SEEDS", "2000"))


def test_seeds_in_memory() -> None:
    faults: dict[str, int] = {}
    for seed in range(SEEDS):
        for name, count in run_seed(seed).faults.items():  # raises naming the seed
            faults[name] = faults.get(name, 0) + count
    # every kind of fault was injected many times
    for name in ("conflict", "drop_ack", "crash_before", "crash_after", "projector_crash"):
        assert faults.get(name, 0) > SEEDS // 10, faults


def test_seeds_on_an_sqlite_file(tmp_path: Path) -> None:
    for seed in range(100_000, 100_000 + max(SEEDS // 10, 20)):
        run_seed(seed, store="sqlite", tmp=tmp_path)


@pytest.mark.postgres
def test_seeds_on_postgres() -> None:
    url = require_postgres()
    faults: dict[str, int] = {}
    for seed in range(200_000, 200_000 + max(SEEDS // 40, 10)):
        reset_postgres(url)
        for name, count in run_seed(seed, store="postgres", pg_url=url).faults.items():
            faults[name] = faults.get(name, 0) + count
    # the store's faults reach the group commit (it appends through the wrapper)
    for name in ("conflict", "drop_ack", "crash_before", "crash_after"):
        assert faults.get(name, 0) > 0, faults


def test_a_planted_bug_is_caught_within_the_seeds() -> None:
    for seed in range(SEEDS):
        try:
            run_seed(seed, planted_bug=True)
        except AssertionError as e:
            assert f"seed {seed}" in str(e)
            return
    pytest.fail("the simulator did not catch a ledger that ignores recorded outcomes")


def test_a_seed_replays_exactly() -> None:
    first, second = run_seed(1234), run_seed(1234)
    assert first.faults == second.faults and first.commands == second.commands

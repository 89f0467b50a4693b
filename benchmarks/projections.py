"""Projection catch-up speed and balance-read latency, on PostgreSQL and SQLite.

Builds a store of at least ``--events`` events (transfers between 10,000 accounts
through the batch path: 3 events per transfer on average: the entry plus one
account event per touched account per transaction), then times a catch-up of the
balances view from zero, and single-account balance reads from the read model.

Expected (2 cores): the runner decodes JSON (~3 us per event) and writes per batch
one upsert per touched account and one history line per (account, entry); a batched
loop of this kind did ~9,700 events/s in the eventsourcing library's terms, and the
target is 30,000 events/s on PostgreSQL. A read is one primary-key lookup: well
under a millisecond.

Run: ``.venv/bin/python -m benchmarks.projections [--events 1000000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.transfers import (
    fresh_pg_database,
    ledger_commands,
    ledger_setup,
    pairs,
    postgres_base_url,
)


def build_store(url: str, events: int) -> int:
    from ledger import Ledger

    ledger_setup(url)
    with Ledger.open(url, create_schema=False) as books:
        rng = random.Random(99)
        round_ = 0
        while books.store.max_position() < events:
            commands = ledger_commands(pairs(rng, 100_000), f"bulk{round_}")
            books.submit_all(commands, chunk_size=5000)
            round_ += 1
        return books.store.max_position()


def catch_up(url: str) -> dict[str, Any]:
    from ledger import Ledger
    from ledger.projections import BalancesView, ProjectionRunner

    with Ledger.open(url, create_schema=False) as books:
        runner = ProjectionRunner.for_ledger(books, [BalancesView()])
        started = time.perf_counter()
        done = runner.catch_up()
        seconds = time.perf_counter() - started
        latencies = []
        rng = random.Random(5)
        with runner.views.snapshot() as w:
            for _ in range(5000):
                account = f"acc:{rng.randrange(10_000)}"
                t = time.perf_counter()
                BalancesView.balance(w, account)
                latencies.append((time.perf_counter() - t) * 1000)
        runner.close()
    latencies.sort()
    return {
        "events": done,
        "seconds": round(seconds, 1),
        "events_per_s": round(done / seconds),
        "read_latency_ms_p50": round(statistics.median(latencies), 3),
        "read_latency_ms_p99": round(latencies[int(len(latencies) * 0.99)], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--out", default="benchmarks/results/projections.json")
    args = parser.parse_args()
    base = postgres_base_url()
    tmp = Path(tempfile.mkdtemp(prefix="ledger-proj-"))
    results = {}
    for store, url in (
        ("postgresql", fresh_pg_database(base, "bench_projection")),
        ("sqlite", f"sqlite:///{tmp}/ledger.db"),
    ):
        total = build_store(url, args.events)
        print(f"{store}: {total} events in the store", flush=True)
        results[store] = catch_up(url)
        print(f"  {results[store]}", flush=True)
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

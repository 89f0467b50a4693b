"""Audit speed and memory over a store of at least 1,000,000 events (PostgreSQL).

Builds the store like ``benchmarks.projections`` (transfers between 10,000 accounts
through the batch path), then runs the audit in a fresh process twice: over the first
half of the log and over all of it, reporting events per second and the peak
resident memory of each run. Memory should be about the same for both: the audit
keeps state per account, not per entry.

Expected: decoding (orjson) and the checks cost a few microseconds per event in
Python; the target is 50,000 events/s.

Run: ``.venv/bin/python -m benchmarks.audit [--events 1000000]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from benchmarks.projections import build_store
from benchmarks.transfers import fresh_pg_database, postgres_base_url

# The child samples its resident memory while it audits (ru_maxrss would include the
# memory of the parent it was forked from: Linux keeps it across exec).
_CHILD = """
import json, os, sys, time
from ledger import Ledger
from ledger.projections.audit import audit
page = os.sysconf("SC_PAGE_SIZE")
peak = [0]
def sample(_):
    with open("/proc/self/statm") as f:
        peak[0] = max(peak[0], int(f.read().split()[1]) * page)
url, until = sys.argv[1], int(sys.argv[2])
with Ledger.open(url, create_schema=False) as books:
    started = time.perf_counter()
    report = audit(books.store, until_position=until, progress=sample)
    seconds = time.perf_counter() - started
print(json.dumps({"events": report.events, "seconds": round(seconds, 1),
                  "events_per_s": round(report.events / seconds), "clean": report.clean,
                  "peak_rss_mb": round(peak[0] / 2**20)}))
"""


def run_audit(url: str, until: int) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, url, str(until)], check=True, capture_output=True, text=True
    )
    return dict(json.loads(out.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--out", default="benchmarks/results/audit.json")
    args = parser.parse_args()
    base = postgres_base_url()
    url = fresh_pg_database(base, "bench_audit")
    build_store(url, args.events)
    from ledger import Ledger

    with Ledger.open(url, create_schema=False) as books:
        total = books.store.max_position()
    results = {"half": run_audit(url, total // 2), "full": run_audit(url, total)}
    for name, figures in results.items():
        print(f"{name}: {figures}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"store_events": total, **results}, indent=2))


if __name__ == "__main__":
    main()

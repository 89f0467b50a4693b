"""Transfers per second: this library against the classic baselines, in one run.

A transfer moves an amount between two of 10,000 accounts with an overdraft check and
a unique idempotency key. Every approach runs on the same PostgreSQL server and the
same disk (SQLite), on tables that already hold history, median of ``--runs`` runs:

* ``ledger single``  - ``Ledger.submit(cmd)``: one command, one transaction.
* ``ledger batch``   - ``Ledger.submit_all(cmds)``: group commit, 10,000 per transaction
  (the most one transaction takes), each chunk decided while the previous one is
  written and the next one's keys are looked up; once with the commands as plain
  mappings (validated in bulk, the fast form) and once as command models.
* ``ceiling``        - the batch path with mappings on a store whose appends write
  nothing (reads are real): what the Python side alone allows on this machine.
* ``naive SQL``      - BEGIN; SELECT ... FOR UPDATE both accounts; UPDATE both;
  INSERT the transfer with a UNIQUE key; COMMIT (SQLite: BEGIN IMMEDIATE, no FOR UPDATE).
* ``eventsourcing``  - the eventsourcing library's bank-account pattern: two account
  aggregates, ``app.save(a, b)`` per transfer (aggregate cache on).

Expected, from ../shared/PERFORMANCE.md on a 2-core machine: naive SQL ~600/s with one
client and ~2,000/s with four (six round trips, ~0.9 ms of CPU per payment);
eventsourcing ~450/s (five round trips per save plus a table lock); the single-command
path about the naive figure (a key lookup round trip plus a pipelined append); the
batch path bounded by Python CPU (~40 us per transfer to decide and encode) and the
bulk COPY of ~3 rows per transfer: 15,000-20,000/s.

Run: ``.venv/bin/python -m benchmarks.transfers`` (starts the throwaway PostgreSQL
with ``.ci/postgres.sh`` unless ``LEDGER_BENCH_POSTGRES_URL`` is set).
"""

from __future__ import annotations

import argparse
import getpass
import json
import multiprocessing
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

ACCOUNTS = 10_000
HISTORY = 20_000
FUNDING_MINOR = 1_000_000
SEED = 20261123


@dataclass
class Plan:
    single: int = 2_000
    batch: int = 60_000
    batch_size: int = 10_000
    naive: int = 2_000
    es: int = 1_500
    runs: int = 5


def pairs(rng: random.Random, n: int) -> list[tuple[int, int, int]]:
    out = []
    for _ in range(n):
        a, b = rng.sample(range(ACCOUNTS), 2)
        out.append((a, b, rng.randrange(1, 500)))
    return out


# -- PostgreSQL databases ------------------------------------------------------------------


def postgres_base_url() -> str:
    """The server the benchmarks use: ``LEDGER_BENCH_POSTGRES_URL``, or the throwaway
    cluster that ``.ci/postgres.sh`` starts (its URL)."""
    return (
        os.environ.get("LEDGER_BENCH_POSTGRES_URL")
        or subprocess.run(
            [".ci/postgres.sh", "start"], check=True, capture_output=True, text=True
        ).stdout.strip()
    )


def drop_pg_database(base_url: str, name: str) -> None:
    """Drop the database ``name`` on ``base_url``'s server, if it exists."""
    root, _, _ = base_url.rpartition("/")
    with psycopg.connect(f"{root}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fresh_pg_database(base_url: str, name: str, template: str | None = None) -> str:
    """An empty database ``name`` (dropped first if it exists), or a copy of the
    database ``template``."""
    drop_pg_database(base_url, name)
    root, _, _ = base_url.rpartition("/")
    copy = "" if template is None else f' TEMPLATE "{template}"'
    with psycopg.connect(f"{root}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy}')
    return f"{root}/{name}"


# -- the library ----------------------------------------------------------------------------


def ledger_commands(triples: list[tuple[int, int, int]], prefix: str) -> list[Any]:
    from ledger.commands import LegInput, PostEntry

    out = []
    for i, (a, b, amount) in enumerate(triples):
        value = Decimal(amount).scaleb(-2)
        out.append(
            PostEntry(
                key=f"{prefix}-{i}",
                legs=(
                    LegInput(account=f"acc:{a}", amount=value, asset="USD"),
                    LegInput(account=f"acc:{b}", amount=-value, asset="USD"),
                ),
            )
        )
    return out


def ledger_mappings(triples: list[tuple[int, int, int]], prefix: str) -> list[dict[str, Any]]:
    """The same transfers as plain mappings (as decoded from JSON), validated in bulk."""
    out = []
    for i, (a, b, amount) in enumerate(triples):
        value = Decimal(amount).scaleb(-2)
        out.append(
            {
                "kind": "post_entry",
                "key": f"{prefix}-{i}",
                "legs": [
                    {"account": f"acc:{a}", "amount": value, "asset": "USD"},
                    {"account": f"acc:{b}", "amount": -value, "asset": "USD"},
                ],
            }
        )
    return out


def ledger_setup(url: str) -> None:
    from ledger import Ledger
    from ledger.commands import OpenAccount, PostEntry

    with Ledger.open(url, pause_gc=True) as books:
        books.open_account("bank", "USD", normal="debit")
        opens = [
            OpenAccount(key=f"open-{i}", account=f"acc:{i}", asset="USD", min_balance=Decimal(0))
            for i in range(ACCOUNTS)
        ]
        for start in range(0, ACCOUNTS, 2000):
            books.submit_many(opens[start : start + 2000])
        funding = Decimal(FUNDING_MINOR).scaleb(-2)
        funds = [
            PostEntry(
                key=f"fund-{i}",
                legs=(
                    {"account": "bank", "amount": funding, "asset": "USD"},  # type: ignore[arg-type]
                    {"account": f"acc:{i}", "amount": -funding, "asset": "USD"},  # type: ignore[arg-type]
                ),
            )
            for i in range(ACCOUNTS)
        ]
        for start in range(0, ACCOUNTS, 2000):
            books.submit_many(funds[start : start + 2000])
        history = ledger_commands(pairs(random.Random(SEED), HISTORY), "history")
        for start in range(0, HISTORY, 2000):
            books.submit_many(history[start : start + 2000])


def ledger_run(
    url: str,
    n: int,
    batch_size: int,
    seed: int,
    prefix: str,
    mappings: bool = False,
    writes: bool = True,
) -> float:
    """Post ``n`` transfers (building the commands is part of the work); return seconds.

    ``mappings``: give the batch path plain mappings (validated in bulk by the ledger)
    instead of command models built one by one. ``writes=False`` measures the ceiling
    of the Python side: everything runs (reads, decisions, events) except that appends
    write nothing."""
    from ledger import Ledger
    from ledger.adapters.urls import open_store

    triples = pairs(random.Random(seed), n)
    store = open_store(url)
    # The bulk path with the collector paused, as the README's bulk-import advice says.
    with Ledger(store if writes else _NoWrites(store), pause_gc=True) as books:
        books.balance("acc:0")  # connect before the clock starts
        started = time.perf_counter()
        commands: list[Any] = (ledger_mappings if mappings else ledger_commands)(triples, prefix)
        if batch_size == 1:
            for cmd in commands:
                books.submit(cmd)
        else:
            books.submit_all(commands, chunk_size=batch_size)
        return time.perf_counter() - started


class _NoWrites:
    """A store whose appends write nothing (every other call is the real store's):
    the ceiling row, not a ledger."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def append(self, batch: Any) -> list[int]:
        return []


# -- naive SQL --------------------------------------------------------------------------------


NAIVE_SCHEMA = (
    "CREATE TABLE accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)",
    "CREATE TABLE transfers (id BIGSERIAL PRIMARY KEY, key TEXT NOT NULL UNIQUE,"
    " src BIGINT NOT NULL, dst BIGINT NOT NULL, amount BIGINT NOT NULL)",
)


def naive_setup_pg(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for stmt in NAIVE_SCHEMA:
            conn.execute(stmt)
        with conn.cursor().copy("COPY accounts (id, balance) FROM STDIN") as copy:
            for i in range(ACCOUNTS):
                copy.write_row((i, FUNDING_MINOR))
    naive_run_pg(url, HISTORY, SEED, "history")


def naive_run_pg(url: str, n: int, seed: int, prefix: str) -> float:
    triples = pairs(random.Random(seed), n)
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        for i, (a, b, amount) in enumerate(triples):
            with conn.transaction():
                rows = conn.execute(
                    "SELECT id, balance FROM accounts WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
                    ([a, b],),
                ).fetchall()
                if dict(rows)[a] < amount:
                    continue
                conn.execute(
                    "UPDATE accounts SET balance = balance - %s WHERE id = %s", (amount, a)
                )
                conn.execute(
                    "UPDATE accounts SET balance = balance + %s WHERE id = %s", (amount, b)
                )
                conn.execute(
                    "INSERT INTO transfers (key, src, dst, amount) VALUES (%s, %s, %s, %s)",
                    (f"{prefix}-{i}", a, b, amount),
                )
        return time.perf_counter() - started


def naive_setup_sqlite(path: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
    conn.execute(
        "CREATE TABLE transfers (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,"
        " src INTEGER NOT NULL, dst INTEGER NOT NULL, amount INTEGER NOT NULL)"
    )
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO accounts VALUES (?, ?)", [(i, FUNDING_MINOR) for i in range(ACCOUNTS)]
    )
    conn.execute("COMMIT")
    conn.close()
    naive_run_sqlite(path, HISTORY, SEED, "history")


def naive_run_sqlite(path: str, n: int, seed: int, prefix: str) -> float:
    triples = pairs(random.Random(seed), n)
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA synchronous=FULL")
    started = time.perf_counter()
    for i, (a, b, amount) in enumerate(triples):
        conn.execute("BEGIN IMMEDIATE")
        balance = conn.execute("SELECT balance FROM accounts WHERE id = ?", (a,)).fetchone()[0]
        conn.execute("SELECT balance FROM accounts WHERE id = ?", (b,)).fetchone()
        if balance < amount:
            conn.execute("ROLLBACK")
            continue
        conn.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (amount, a))
        conn.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, b))
        conn.execute(
            "INSERT INTO transfers (key, src, dst, amount) VALUES (?, ?, ?, ?)",
            (f"{prefix}-{i}", a, b, amount),
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


# -- eventsourcing bank-account pattern ---------------------------------------------------------


def es_env(url: str) -> dict[str, str]:
    if url.startswith("sqlite:///"):
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": url[len("sqlite:///") :],
        }
    from ledger.adapters.postgres_store import parse_postgres_url

    s = parse_postgres_url(url)  # only what the URL gives; eventsourcing needs them all
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": s["dbname"],
        "POSTGRES_HOST": s.get("host") or os.environ.get("PGHOST", "localhost"),
        "POSTGRES_PORT": str(s.get("port") or os.environ.get("PGPORT", "5432")),
        "POSTGRES_USER": s.get("user") or os.environ.get("PGUSER", getpass.getuser()),
        "POSTGRES_PASSWORD": s.get("password") or os.environ.get("PGPASSWORD", ""),
    }


def es_app(url: str) -> Any:
    from benchmarks.es_bank import Bank

    return Bank(env=es_env(url))


def es_setup(url: str) -> None:
    app = es_app(url)
    app.open()
    for a, b, amount in pairs(random.Random(SEED), 2000):
        app.transfer(a, b, amount)


def es_run(url: str, n: int, seed: int) -> float:
    app = es_app(url)
    triples = pairs(random.Random(seed), n)
    for a in range(ACCOUNTS):  # warm the aggregate cache outside the clock
        app.repository.get(uuid.uuid5(uuid.NAMESPACE_URL, f"acc:{a}"))
    started = time.perf_counter()
    for a, b, amount in triples:
        app.transfer(a, b, amount)
    return time.perf_counter() - started


# -- running -------------------------------------------------------------------------------------


def in_processes(
    clients: int, fn: Callable[..., float], args_for: Callable[[int], tuple[Any, ...]]
) -> float:
    """Run ``fn`` in ``clients`` fresh processes at once; return the wall time of the
    slowest (one client: the time ``fn`` measured itself)."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(clients) as pool:
        if clients == 1:
            return float(pool.apply(fn, args_for(0)))
        started = time.perf_counter()
        pool.starmap(fn, [args_for(c) for c in range(clients)])
        return time.perf_counter() - started


def measure(name: str, n_total: int, run: Callable[[int], float], runs: int) -> dict[str, Any]:
    rates = []
    for r in range(runs):
        seconds = run(r)
        rates.append(n_total / seconds)
    result = {
        "name": name,
        "transfers_per_s": round(statistics.median(rates)),
        "runs": [round(x) for x in rates],
    }
    print(f"  {name:<50} {result['transfers_per_s']:>8}/s  runs={result['runs']}", flush=True)
    return result


def analyze(base: str, store: str) -> None:
    """Give the planner fresh statistics after the bulk setup (a fair start for all)."""
    if store != "postgresql":
        return
    root, _, _ = base.rpartition("/")
    for db in ("bench_ledger", "bench_naive", "bench_es"):
        with psycopg.connect(f"{root}/{db}", autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")


def bench_store(
    store: str, plan: Plan, lib: str, naive: str, es: str, naive_run: Callable[..., float]
) -> list[dict[str, Any]]:
    """Every approach on one store, one after the other."""
    results = []
    for clients in (1, 4):
        n = plan.single * clients

        def naive_args(k: int, r: int, c: int = clients) -> tuple[Any, ...]:
            return (naive, plan.naive, SEED + 100 * r + k, f"n{r}-{k}-{c}")

        def single_args(k: int, r: int, c: int = clients) -> tuple[Any, ...]:
            return (lib, plan.single, 1, SEED + 100 * r + k, f"s{r}-{k}-{c}")

        for name, fn, args in (
            (f"naive SQL, {clients} client(s)", naive_run, naive_args),
            (f"ledger single, {clients} client(s)", ledger_run, single_args),
        ):
            rates = measure(
                name,
                n,
                lambda r, fn=fn, args=args, c=clients: in_processes(c, fn, lambda k: args(k, r)),
                plan.runs,
            )
            results.append({"store": store, "clients": clients, **rates})
    es_rates = measure(
        "eventsourcing pattern, 1 client",
        plan.es,
        lambda r: in_processes(1, es_run, lambda k: (es, plan.es, SEED + 7 * r)),
        plan.runs,
    )
    results.append({"store": store, "clients": 1, **es_rates})
    for name, mappings, writes in (
        (f"ledger batch, mappings ({plan.batch_size}/tx)", True, True),
        (f"ledger batch, models ({plan.batch_size}/tx)", False, True),
        ("ceiling: batch, mappings, no writes", True, False),
    ):
        batch_rates = measure(
            f"{name}, 1 client",
            plan.batch,
            lambda r, m=mappings, w=writes: in_processes(
                1,
                ledger_run,
                lambda k: (lib, plan.batch, plan.batch_size, SEED + 11 * r, f"b{m}{w}{r}", m, w),
            ),
            plan.runs,
        )
        results.append({"store": store, "clients": 1, **batch_rates})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smaller counts (a smoke run)")
    parser.add_argument("--out", default="benchmarks/results/transfers.json")
    args = parser.parse_args()
    plan = Plan(runs=args.runs)
    if args.quick:
        plan = Plan(single=300, batch=6000, batch_size=2000, naive=300, es=300, runs=1)
    base = postgres_base_url()
    tmp = Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    results: list[dict[str, Any]] = []
    for store in ("postgresql", "sqlite"):
        print(f"{store}:", flush=True)
        if store == "postgresql":
            lib = fresh_pg_database(base, "bench_ledger")
            naive = fresh_pg_database(base, "bench_naive")
            es = fresh_pg_database(base, "bench_es")
            naive_setup, naive_run = naive_setup_pg, naive_run_pg
        else:
            lib, naive, es = (
                f"sqlite:///{tmp}/ledger.db",
                str(tmp / "naive.db"),
                f"sqlite:///{tmp}/es.db",
            )
            naive_setup, naive_run = naive_setup_sqlite, naive_run_sqlite
        ledger_setup(lib)
        naive_setup(naive)
        es_setup(es)
        analyze(base, store)
        results.extend(bench_store(store, plan, lib, naive, es, naive_run))
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print_ratios(results)


def print_ratios(results: list[dict[str, Any]]) -> None:
    print("\nratios (same store, same run):")
    for store in ("postgresql", "sqlite"):
        rows = {(r["name"]): r["transfers_per_s"] for r in results if r["store"] == store}
        naive1 = rows.get("naive SQL, 1 client(s)")
        for name, rate in rows.items():
            if naive1:
                ratio = rate / naive1
                print(f"  {store:<11} {name:<50} {rate:>8}/s  x{ratio:.2f} of naive SQL (1 client)")


if __name__ == "__main__":
    main()

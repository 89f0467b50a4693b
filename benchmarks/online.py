"""The online path: one payment per call, many callers at once, against naive SQL.

A payment moves an amount between two of 10,000 accounts (overdraft check, unique
idempotency key), as in ``benchmarks.transfers``, but here every caller submits one
payment per call and waits for it, the way a payment service handles requests:

* ``threads N``      - N threads share one ``Ledger`` and call ``transfer()``;
* ``asyncio 32``     - 32 tasks on one event loop share one ``AsyncLedger`` and await
  ``transfer()``;
* ``4 procs x 8``    - 4 processes, each with its own ``Ledger`` and 8 threads.

Each process of callers, once set up and warm, moves its startup objects out of the
collector's reach (``gc.freeze()``), as the example service does and the README
advises services to do. Beside each row, the naive SQL payment write at the same
concurrency, in the same run
(BEGIN; SELECT ... FOR UPDATE both accounts; UPDATE both; INSERT the transfer with a
UNIQUE key; COMMIT; one connection per thread or task; SQLite: BEGIN IMMEDIATE). Each
row runs in fresh processes for ``--seconds`` after a warm-up second; figures are
payments per second and per-call latency (p50, p99, p99.9) in milliseconds, median
run of ``--runs`` by throughput. Every row starts from the same books: copies of
databases set up once (10,000 funded accounts and 20,000 payments of history), so
that rows compare under the same conditions. (Run on one growing database, the last
row, 4 processes, ran on a log of 3.2 million events, 1.4 GB, against the 8 threads
row's third of that, and the same probe of 4 processes made 3,899-3,971 payments/s
there against 4,303-4,437/s on the fresh books; one process of 8 threads 3,637/s
there.) On PostgreSQL a checkpoint runs before each side of a row is measured, so
that what the copy wrote is not flushed during either side's runs.

Expected on a 2-core machine (../shared/PERFORMANCE.md): the naive write ~2,500/s with
8 threads and ~3,000/s with 32 on PostgreSQL (six round trips and ~0.9 ms of CPU per
payment, spread over connections). The ledger with group commit pays one pipelined
append and commit per *batch* of whatever arrived meanwhile, plus ~60-100 us of Python
per payment (build, decide, encode, wake the caller): 8 callers make batches of up to
8 with ~2-3 ms latency (~3,000-4,000/s), 32 callers batches of ~32 (~6,000/s and up,
bounded by the one core Python gets). SQLite's naive write is ~3,800/s on one
connection (one fsync per payment) and does not scale with threads (one writer).

Run: ``.venv/bin/python -m benchmarks.online`` (starts the throwaway PostgreSQL with
``.ci/postgres.sh`` unless ``LEDGER_BENCH_POSTGRES_URL`` is set); ``--quick`` for a
smoke run; ``--store sqlite`` or ``--store postgresql`` for one store.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import platform
import random
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.transfers import (
    ACCOUNTS,
    drop_pg_database,
    fresh_pg_database,
    ledger_setup,
    naive_setup_pg,
    naive_setup_sqlite,
    postgres_base_url,
)

SEED = 20261130
WARMUP_S = 1.0


@dataclass(frozen=True)
class Row:
    """One concurrency setting: ``procs`` processes of ``callers`` threads or tasks."""

    label: str
    procs: int
    callers: int
    mode: str  # "threads" or "asyncio"


ROWS = (
    Row("threads 1", 1, 1, "threads"),
    Row("threads 8", 1, 8, "threads"),
    Row("threads 32", 1, 32, "threads"),
    Row("threads 64", 1, 64, "threads"),
    Row("asyncio 32", 1, 32, "asyncio"),
    Row("4 procs x 8 threads", 4, 8, "threads"),
)


# -- one payment, four ways ---------------------------------------------------------------------


def _pick(rng: random.Random) -> tuple[int, int, int]:
    a, b = rng.sample(range(ACCOUNTS), 2)
    return a, b, rng.randrange(1, 500)


class LedgerPayer:
    """Payments through one shared ``Ledger`` (threads) or ``AsyncLedger`` (tasks)."""

    def __init__(self, url: str) -> None:
        from ledger import Ledger

        self.books = Ledger.open(url, create_schema=False)
        self.books.balance("acc:0")  # connected before the clock starts
        self.abooks: Any = None
        # A service that has been running has its accounts' states in its cache:
        # touch every account once before the clock starts.
        tag = f"warm-{os.getpid()}-{time.time_ns()}"
        self.books.submit_all(
            [
                {
                    "kind": "post_entry",
                    "key": f"{tag}-{i}",
                    "legs": [
                        {"account": f"acc:{i}", "amount": "0.01", "asset": "USD"},
                        {"account": f"acc:{(i + 1) % ACCOUNTS}", "amount": "-0.01", "asset": "USD"},
                    ],
                }
                for i in range(ACCOUNTS)
            ]
        )

    def pay(self, key: str, a: int, b: int, amount: int) -> None:
        self.books.transfer(
            key,
            debit=f"acc:{b}",
            credit=f"acc:{a}",
            amount=Decimal(amount).scaleb(-2),
            asset="USD",
        )

    async def apay(self, key: str, a: int, b: int, amount: int) -> None:
        if self.abooks is None:
            from ledger import AsyncLedger  # type: ignore[attr-defined,unused-ignore]

            self.abooks = AsyncLedger(self.books)
        await self.abooks.transfer(
            key,
            debit=f"acc:{b}",
            credit=f"acc:{a}",
            amount=Decimal(amount).scaleb(-2),
            asset="USD",
        )

    def close(self) -> None:
        self.books.close()

    async def aclose(self) -> None:
        """Close from the event loop (the ledger refuses a blocking close there)."""
        if self.abooks is not None:
            await self.abooks.close()
        else:
            self.books.close()


_NAIVE_PG = (
    "SELECT id, balance FROM accounts WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
    "UPDATE accounts SET balance = balance - %s WHERE id = %s",
    "UPDATE accounts SET balance = balance + %s WHERE id = %s",
    "INSERT INTO transfers (key, src, dst, amount) VALUES (%s, %s, %s, %s)",
)


class NaivePgPayer:
    """The classic payment write, one connection per thread or task."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.local = threading.local()

    def _conn(self) -> psycopg.Connection[Any]:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = psycopg.connect(self.url)
        return conn

    def pay(self, key: str, a: int, b: int, amount: int) -> None:
        conn = self._conn()
        select, debit, credit, insert = _NAIVE_PG
        with conn.transaction():
            rows = conn.execute(select, ([a, b],)).fetchall()
            if dict(rows)[a] < amount:
                return
            conn.execute(debit, (amount, a))
            conn.execute(credit, (amount, b))
            conn.execute(insert, (key, a, b, amount))

    async def apay(self, key: str, a: int, b: int, amount: int, conn: Any) -> None:
        select, debit, credit, insert = _NAIVE_PG
        async with conn.transaction():
            cur = await conn.execute(select, ([a, b],))
            rows = await cur.fetchall()
            if dict(rows)[a] < amount:
                return
            await conn.execute(debit, (amount, a))
            await conn.execute(credit, (amount, b))
            await conn.execute(insert, (key, a, b, amount))

    def close(self) -> None:
        pass


class NaiveSqlitePayer:
    """The classic payment write on SQLite (BEGIN IMMEDIATE, synchronous FULL)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=60)
            conn.execute("PRAGMA synchronous=FULL")
            self.local.conn = conn
        return conn

    def pay(self, key: str, a: int, b: int, amount: int) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            balance = conn.execute("SELECT balance FROM accounts WHERE id = ?", (a,)).fetchone()[0]
            conn.execute("SELECT balance FROM accounts WHERE id = ?", (b,)).fetchone()
            if balance < amount:
                conn.execute("ROLLBACK")
                return
            conn.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (amount, a))
            conn.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, b))
            conn.execute(
                "INSERT INTO transfers (key, src, dst, amount) VALUES (?, ?, ?, ?)",
                (key, a, b, amount),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        pass


def _payer(kind: str, target: str) -> Any:
    if kind == "ledger":
        return LedgerPayer(target)
    if target.startswith("postgresql://"):
        return NaivePgPayer(target)
    return NaiveSqlitePayer(target)


# -- one process of callers ---------------------------------------------------------------------


def _window(start_at: float, seconds: float) -> tuple[float, float]:
    begin = start_at + WARMUP_S
    return begin, begin + seconds


def run_threads(
    kind: str, target: str, callers: int, seconds: float, ready: Callable[[], float], tag: str
) -> list[float]:
    """``callers`` threads paying until the window ends; latencies (s) of the calls
    that started inside the window. ``ready`` waits for every process to be ready and
    returns the agreed start on this process's perf_counter clock."""
    payer = _payer(kind, target)
    gc.freeze()  # as a service does after startup (see the README's sizing notes)
    start_at = ready()
    begin, end = _window(start_at, seconds)
    per_thread: list[list[float]] = [[] for _ in range(callers)]
    errors: list[BaseException] = []

    def caller(index: int) -> None:
        rng = random.Random(f"{SEED}-{tag}-{index}")
        mine = per_thread[index]
        i = 0
        try:
            while True:
                a, b, amount = _pick(rng)
                t0 = time.perf_counter()
                if t0 >= end:
                    return
                payer.pay(f"{tag}-{index}-{i}", a, b, amount)
                if t0 >= begin:
                    mine.append(time.perf_counter() - t0)
                i += 1
        except BaseException as e:  # reported after the run
            errors.append(e)

    _sleep_until(start_at)
    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    payer.close()
    if errors:
        raise errors[0]
    return [x for lat in per_thread for x in lat]


def run_tasks(
    kind: str, target: str, callers: int, seconds: float, ready: Callable[[], float], tag: str
) -> list[float]:
    """``callers`` asyncio tasks on one event loop, paying until the window ends."""
    return asyncio.run(_run_tasks(kind, target, callers, seconds, ready, tag))


async def _run_tasks(
    kind: str, target: str, callers: int, seconds: float, ready: Callable[[], float], tag: str
) -> list[float]:
    payer = _payer(kind, target)
    gc.freeze()  # as a service does after startup (see the README's sizing notes)
    start_at = ready()
    begin, end = _window(start_at, seconds)
    latencies: list[float] = []

    async def caller(index: int) -> None:
        rng = random.Random(f"{SEED}-{tag}-{index}")
        conn = None
        if isinstance(payer, NaivePgPayer):
            conn = await psycopg.AsyncConnection.connect(payer.url)
        try:
            i = 0
            while True:
                a, b, amount = _pick(rng)
                t0 = time.perf_counter()
                if t0 >= end:
                    return
                key = f"{tag}-{index}-{i}"
                if conn is not None:
                    await payer.apay(key, a, b, amount, conn)
                elif isinstance(payer, LedgerPayer):
                    await payer.apay(key, a, b, amount)
                else:  # naive SQLite: blocking driver, one thread per call
                    await asyncio.to_thread(payer.pay, key, a, b, amount)
                if t0 >= begin:
                    latencies.append(time.perf_counter() - t0)
                i += 1
        finally:
            if conn is not None:
                await conn.close()

    _sleep_until(start_at)
    await asyncio.gather(*(caller(i) for i in range(callers)))
    if isinstance(payer, LedgerPayer):
        await payer.aclose()
    else:
        payer.close()
    return latencies


def _sleep_until(at: float) -> None:
    """Sleep until ``at`` on this process's perf_counter clock."""
    delay = at - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


def _worker(
    kind: str,
    target: str,
    row: Row,
    seconds: float,
    tag: str,
    barrier: Any,
    results: Any,
) -> None:
    """One process of callers: get ready (connect, warm up), wait for the others,
    run the window, send the latencies back."""

    def ready() -> float:
        barrier.wait()
        return time.perf_counter() + 0.2

    fn = run_tasks if row.mode == "asyncio" else run_threads
    try:
        results.put(fn(kind, target, row.callers, seconds, ready, tag))
    except BaseException as e:
        barrier.abort()
        results.put(e)
        raise


# -- measuring -----------------------------------------------------------------------------------


def measure_once(kind: str, target: str, row: Row, seconds: float, tag: str) -> dict[str, Any]:
    """One run of one row in fresh processes; throughput and latency percentiles."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(row.procs)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker,
            args=(kind, target, row, seconds, f"{tag}-p{p}", barrier, results),
        )
        for p in range(row.procs)
    ]
    for proc in procs:
        proc.start()
    parts = [results.get() for _ in procs]
    for proc in procs:
        proc.join()
    for part in parts:
        if isinstance(part, BaseException):
            raise part
    latencies = sorted(x for part in parts for x in part)
    return {
        "payments_per_s": round(len(latencies) / seconds),
        "latency_ms_p50": _ms(latencies, 0.5),
        "latency_ms_p99": _ms(latencies, 0.99),
        "latency_ms_p999": _ms(latencies, 0.999),
    }


def _ms(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return round(sorted_values[index] * 1000, 2)


def measure(
    kind: str, target: str, row: Row, seconds: float, runs: int, tag: str
) -> dict[str, Any]:
    results = [measure_once(kind, target, row, seconds, f"{tag}-r{r}") for r in range(runs)]
    results.sort(key=lambda r: r["payments_per_s"])
    median = results[len(results) // 2]
    return {**median, "runs": [r["payments_per_s"] for r in results]}


class PgBooks:
    """The ledger's and the naive write's databases, set up once as templates;
    :meth:`fresh` hands out copies of both for a row."""

    def __init__(self) -> None:
        self.base = postgres_base_url()
        self.names = ("bench_online_ledger", "bench_online_naive")
        ledger_template = fresh_pg_database(self.base, "bench_online_ledger_template")
        naive_template = fresh_pg_database(self.base, "bench_online_naive_template")
        ledger_setup(ledger_template)
        naive_setup_pg(naive_template)
        for url in (ledger_template, naive_template):
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")

    def fresh(self) -> tuple[str, str]:
        """Copies of both templates: (ledger URL, naive URL)."""
        ledger, naive = (fresh_pg_database(self.base, n, f"{n}_template") for n in self.names)
        return ledger, naive

    def settle(self) -> None:
        """Checkpoint, so that what the copies wrote is flushed before either side
        is measured (the next checkpoint would land in whichever side runs then)."""
        with psycopg.connect(self.base, autocommit=True) as conn:
            conn.execute("CHECKPOINT")

    def drop(self) -> None:
        """Drop the copies and the templates."""
        for name in self.names:
            drop_pg_database(self.base, name)
            drop_pg_database(self.base, f"{name}_template")


class SqliteBooks:
    """As :class:`PgBooks`, in SQLite files (copied with SQLite's backup API)."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="ledger-online-"))
        self.templates = self.tmp / "ledger-template.db", self.tmp / "naive-template.db"
        ledger_setup(f"sqlite:///{self.templates[0]}")
        naive_setup_sqlite(str(self.templates[1]))

    def fresh(self) -> tuple[str, str]:
        copies = self.tmp / "ledger.db", self.tmp / "naive.db"
        for source, target in zip(self.templates, copies, strict=True):
            for stale in target.parent.glob(f"{target.name}*"):  # the last row's, -wal too
                stale.unlink()
            src, dst = sqlite3.connect(source), sqlite3.connect(target)
            try:
                src.backup(dst)
            finally:
                src.close()
                dst.close()
        return f"sqlite:///{copies[0]}", str(copies[1])

    def settle(self) -> None:
        pass

    def drop(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def bench_store(
    store: str,
    books: PgBooks | SqliteBooks,
    rows: tuple[Row, ...],
    seconds: float,
    runs: int,
) -> list[dict[str, Any]]:
    """Each row on fresh copies of the same books (see the module's docstring)."""
    results = []
    for index, row in enumerate(rows):
        ledger_url, naive_target = books.fresh()
        line: dict[str, Any] = {"store": store, "row": row.label}
        for kind, target in (("naive", naive_target), ("ledger", ledger_url)):
            books.settle()
            tag = f"{store[:2]}{kind[0]}{index}-{time.time_ns()}"
            try:
                line[kind] = measure(kind, target, row, seconds, runs, tag)
            except Exception as e:  # a missing API is reported, not fatal
                line[kind] = {"error": f"{type(e).__name__}: {e}"}
        _print_line(line)
        results.append(line)
    return results


def _print_line(line: dict[str, Any]) -> None:
    parts = [f"  {line['store']:<10} {line['row']:<20}"]
    for kind in ("naive", "ledger"):
        r = line[kind]
        if "error" in r:
            parts.append(f"{kind}: {r['error'][:60]}")
        else:
            parts.append(
                f"{kind} {r['payments_per_s']:>6}/s p50 {r['latency_ms_p50']:>6} "
                f"p99 {r['latency_ms_p99']:>6} p99.9 {r['latency_ms_p999']:>6} ms"
            )
    naive, ours = line["naive"], line["ledger"]
    if "error" not in naive and "error" not in ours and naive["payments_per_s"]:
        parts.append(f"x{ours['payments_per_s'] / naive['payments_per_s']:.2f}")
    print("  ".join(parts), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--store", choices=("both", "postgresql", "sqlite"), default="both")
    parser.add_argument("--rows", help="comma-separated row labels to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="2 s, one run (a smoke run)")
    parser.add_argument("--out", default="benchmarks/results/online.json")
    args = parser.parse_args()
    seconds, runs = (2.0, 1) if args.quick else (args.seconds, args.runs)
    rows = ROWS
    if args.rows:
        wanted = {label.strip() for label in args.rows.split(",")}
        rows = tuple(r for r in ROWS if r.label in wanted)
    stores = ("postgresql", "sqlite") if args.store == "both" else (args.store,)
    results: list[dict[str, Any]] = []
    for store in stores:
        print(f"{store}:", flush=True)
        books = PgBooks() if store == "postgresql" else SqliteBooks()
        try:
            results.extend(bench_store(store, books, rows, seconds, runs))
        finally:
            books.drop()
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "seconds_per_run": seconds,
        "runs": runs,
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

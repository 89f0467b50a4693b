"""The online path under kill -9: a writer process whose 32 threads submit payments
one per call (sharing group commits) is SIGKILLed at random moments, many times, and
restarted; each run first retries a few keys of the run before. Every command that
returned an outcome to its caller is in the log exactly once with that outcome, no
key is applied twice, money is conserved and the audit is clean."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import signal
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.commands import LegInput, PostEntry
from ledger.events import TOPIC_ENTRY
from ledger.model import entry_id_for_key
from ledger.projections.audit import audit
from tests.conftest import require_postgres, reset_postgres

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WALLETS = 12
THREADS = 32
RUNS = 6
FUNDS = "1000000"


def payment(key: str) -> PostEntry:
    """The request of a key, always the same (so a retry is the same request)."""
    digest = hashlib.sha256(key.encode()).digest()
    src, dst = digest[0] % WALLETS, digest[1] % WALLETS
    if src == dst:
        dst = (dst + 1) % WALLETS
    value = Decimal(1 + digest[2]).scaleb(-2)
    return PostEntry(
        key=key,
        legs=(
            LegInput(account=f"w{src}", amount=value, asset="USD"),
            LegInput(account=f"w{dst}", amount=-value, asset="USD"),
        ),
    )


def writer(url: str, run: int, acks: str) -> None:
    """32 threads, one payment per call, each acknowledged outcome appended to
    ``acks`` (one small write per line: whole lines survive the kill)."""
    fd = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with Ledger.open(url, create_schema=False) as books:

        def caller(t: int) -> None:
            keys = [f"r{run - 1}-t{t}-{j}" for j in range(3)] if run else []
            keys += (f"r{run}-t{t}-{i}" for i in range(100_000))
            for key in keys:
                outcome = books.submit(payment(key))
                os.write(fd, f"{key} {outcome.status} {outcome.entry_id}\n".encode())

        threads = [threading.Thread(target=caller, args=(t,), daemon=True) for t in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_online_writer_killed_repeatedly_loses_and_doubles_nothing(tmp_path: Path) -> None:
    url = require_postgres()
    Ledger.open(url).close()
    reset_postgres(url)
    with Ledger.open(url) as books:
        books.open_account("bank", "USD", normal="debit")
        for w in range(WALLETS):
            books.open_account(f"w{w}", "USD", min_balance="0")
            books.transfer(f"fund-{w}", debit="bank", credit=f"w{w}", amount=FUNDS, asset="USD")
    acks = tmp_path / "acks.txt"
    ctx = multiprocessing.get_context("spawn")
    rng = random.Random(20261130)
    for run in range(RUNS):
        proc = ctx.Process(target=writer, args=(url, run, str(acks)))
        proc.start()
        # kill it once it is writing, at a random moment
        before = _lines(acks)
        deadline = time.monotonic() + 60
        while _lines(acks) < before + 200:
            assert proc.is_alive() and time.monotonic() < deadline, "the writer made no progress"
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 0.5))
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
    seen: dict[str, set[str]] = {}
    for line in acks.read_text().splitlines():
        key, status, entry = line.split(" ")
        assert status == "applied", line  # funds are ample: nothing is refused
        seen.setdefault(key, set()).add(entry)
    assert len(seen) > RUNS * THREADS  # the writers did get work done
    retried = [key for key in seen if key.endswith(("-0", "-1", "-2"))]
    assert retried
    with Ledger.open(url, create_schema=False) as books:
        for key, entries in seen.items():
            # one entry per key, the one its callers were told about
            assert entries == {str(entry_id_for_key(key))}
            found = books.store.load_streams([entry_id_for_key(key)])
            assert entry_id_for_key(key) in found, key
        log = []
        position = 0
        while batch := books.store.read_log(position, 5000):
            log.extend(batch)
            position = batch[-1].id
        first_events = [
            e.originator_id for e in log if e.topic == TOPIC_ENTRY and e.originator_version == 1
        ]
        assert len(first_events) == len(set(first_events))  # no entry written twice
        wallets = sum((books.balance(f"w{w}").posted for w in range(WALLETS)), Decimal(0))
        assert wallets == Decimal(FUNDS) * WALLETS  # payments only move money around
        assert audit(books.store).clean

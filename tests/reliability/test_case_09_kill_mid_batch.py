"""Reliability case 9, kill -9 mid-batch: a writer process submitting a long list of
payments in chunks is SIGKILLed at random points, many times, and restarted with the
same list each time. Afterwards every command is all-or-nothing and applied at most
once, the final state equals a serial run of the list (a plain model), and the views
built incrementally between the kills equal a rebuild from zero."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
from decimal import Decimal

import pytest

from ledger import Ledger
from ledger.commands import LegInput, PostEntry
from ledger.events import TOPIC_ENTRY
from ledger.projections import BalancesView, ProjectionRunner
from tests.conftest import require_postgres, reset_postgres
from tests.integration.kafka_support import view_rows

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WALLETS = 8
FUNDS = 2_000  # minor units per wallet: overdrafts happen and are rejected


def the_list(n: int) -> list[PostEntry]:
    rng = random.Random(9)
    out = []
    for i in range(n):
        a, b = rng.sample(range(WALLETS), 2)
        value = Decimal(rng.randrange(1, 900)).scaleb(-2)
        out.append(
            PostEntry(
                key=f"job-{i}",
                legs=(
                    LegInput(account=f"w{a}", amount=value, asset="USD"),
                    LegInput(account=f"w{b}", amount=-value, asset="USD"),
                ),
            )
        )
    return out


def writer(url: str, n: int) -> None:
    with Ledger.open(url, create_schema=False) as books:
        books.submit_all(the_list(n), chunk_size=20)


def serial_model(n: int) -> tuple[dict[str, int], set[str]]:
    balances = {f"w{w}": FUNDS for w in range(WALLETS)}
    applied = set()
    for cmd in the_list(n):
        src, dst = cmd.legs[0].account, cmd.legs[1].account
        amount = int(cmd.legs[0].amount.scaleb(2))
        if balances[src] - amount >= 0:  # credit-normal wallets: a debit lowers them
            balances[src] -= amount
            balances[dst] += amount
            applied.add(cmd.key)
    return balances, applied


def test_writer_killed_mid_batch_many_times() -> None:
    url = require_postgres()
    Ledger.open(url).close()
    reset_postgres(url)
    n = 12_000
    with Ledger.open(url) as books:
        books.open_account("bank", "USD", normal="debit")
        for w in range(WALLETS):
            books.open_account(f"w{w}", "USD", min_balance="0")
            books.transfer(f"fund-{w}", debit="bank", credit=f"w{w}", amount="20", asset="USD")
    ctx = multiprocessing.get_context("spawn")
    rng = random.Random(4)
    kills, progress = 0, []
    with Ledger.open(url, create_schema=False) as books:
        runner = ProjectionRunner.for_ledger(books, [BalancesView()])
        while kills < 8:
            proc = ctx.Process(target=writer, args=(url, n))
            proc.start()
            # kill it once it has committed something in this life (the spawn takes a
            # second or more under load), at a random point after that
            before = books.store.max_position()
            deadline = time.monotonic() + 60
            while books.store.max_position() == before and proc.is_alive():
                assert time.monotonic() < deadline, "the writer made no progress"
                time.sleep(0.02)
            time.sleep(rng.uniform(0, 0.4))
            if not proc.is_alive():
                break
            os.kill(proc.pid, signal.SIGKILL)  # type: ignore[arg-type]
            proc.join()
            kills += 1
            progress.append(books.store.max_position())
            runner.catch_up()  # views built incrementally between the crashes
        final = ctx.Process(target=writer, args=(url, n))
        final.start()
        final.join()
        assert final.exitcode == 0
        runner.catch_up()
        with runner.views.snapshot() as w:
            incremental = view_rows(w)
        runner.rebuild("balances")
        with runner.views.snapshot() as w:
            rebuilt = view_rows(w)
        runner.close()
        assert incremental == rebuilt
        # killed mid-list: some progress each time, never the whole list
        assert kills >= 4 and len(set(progress)) >= 3, progress
        balances, applied = serial_model(n)
        for name, minor in balances.items():
            assert books.balance(name).posted == Decimal(minor).scaleb(-2), name
        keys, position = [], 0
        while batch := books.store.read_log(position, 10_000):
            keys += [n.originator_id for n in batch if n.topic == TOPIC_ENTRY]
            position = batch[-1].id
        assert len(keys) == len(set(keys))  # no key applied twice
        assert len(keys) == len(applied) + WALLETS  # the applied jobs and the fundings

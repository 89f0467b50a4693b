"""Projection runner faults against the real PostgreSQL: the projector killed with
SIGKILL mid-batch many times while another process keeps writing; and writers whose
positions are issued before an earlier writer commits, with a rolled-back append
leaving a gap. In every case the view ends equal to a plain replay of the log."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from decimal import Decimal

import pytest

from ledger import Ledger
from ledger.commands import LegInput, PostEntry
from ledger.commands.executor import Executor, fingerprint
from ledger.events import TOPIC_ENTRY, LogEvent
from ledger.model import entry_id_for_key
from ledger.projections import BalancesView, FeedView, ProjectionRunner
from tests.conftest import require_postgres, reset_postgres
from tests.property.test_feed_statement_replay import plain_feed
from tests.property.test_views_machine import plain_replay

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

USERS = 30


def fresh(url: str) -> None:
    Ledger.open(url).close()
    reset_postgres(url)
    with Ledger.open(url) as books:
        books.open_account("bank", "USD", normal="debit")
        for u in range(USERS):
            books.open_account(f"u{u}", "USD", owner=f"user{u}")


def transfers(seed: int, n: int, prefix: str) -> list[PostEntry]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.sample(["bank", *(f"u{u}" for u in range(USERS))], 2)
        value = Decimal(rng.randrange(1, 9999)).scaleb(-2)
        out.append(
            PostEntry(
                key=f"{prefix}-{i}",
                legs=(
                    LegInput(account=a, amount=value, asset="USD"),
                    LegInput(account=b, amount=-value, asset="USD"),
                ),
            )
        )
    return out


def writer_main(url: str, n: int) -> None:
    with Ledger.open(url, create_schema=False) as books:
        commands = transfers(7, n, "w")
        for start in range(0, n, 15):
            books.submit_many(commands[start : start + 15])
            time.sleep(0.002)


def projector_main(url: str) -> None:
    with Ledger.open(url, create_schema=False) as books:
        runner = ProjectionRunner.for_ledger(
            books,
            [BalancesView(), FeedView()],
            batch_size=40,
            # widen the window between the view writes and the checkpoint
            on_flushed=lambda _: time.sleep(random.uniform(0, 0.02)),
        )
        runner.follow(threading.Event(), poll_s=0.01)


def assert_view_equals_replay(url: str) -> None:
    with Ledger.open(url, create_schema=False) as books:
        runner = ProjectionRunner.for_ledger(books, [BalancesView(), FeedView()])
        runner.catch_up()
        events = [LogEvent.from_notification(n) for n in books.store.read_log(0, 10_000_000)]
        assert runner.checkpoint("balances") == events[-1].position
        entry_lines = sum(
            len({leg[0] for leg in e.body["legs"] + e.body["releases"]})
            for e in events
            if e.topic == TOPIC_ENTRY
        )
        with runner.views.snapshot() as w:
            (lines,) = w.query("SELECT count(*) FROM rm_balance_lines")[0]
            assert lines == entry_lines, "an event was skipped or counted twice"
            feed = w.query(
                "SELECT position, payer, payee, amount, scale, note, visibility FROM rm_feed_items"
            )
            got = sorted(
                ((int(p), a, b, Decimal(int(m)).scaleb(-s), n, v) for p, a, b, m, s, n, v in feed),
                reverse=True,
            )
            assert got == plain_feed(events)
            for name in ["bank", *(f"u{u}" for u in range(USERS))]:
                row = BalancesView.balance(w, name)
                assert row is not None
                got = tuple(int(v.scaleb(2)) for v in (row.posted, row.pending_out, row.pending_in))
                assert got == plain_replay(events, name, None, "recorded"), name
        runner.close()


def test_case_13_projector_crash_killed_mid_batch_many_times_while_writers_write() -> None:
    url = require_postgres()
    fresh(url)
    ctx = multiprocessing.get_context("spawn")
    writer = ctx.Process(target=writer_main, args=(url, 3000))
    writer.start()
    kills = 0
    rng = random.Random(42)
    checkpoints = []
    with Ledger.open(url, create_schema=False) as books:
        probe = ProjectionRunner.for_ledger(books, [BalancesView()])
        while writer.is_alive() or kills < 12:
            projector = ctx.Process(target=projector_main, args=(url,))
            projector.start()
            # kill it once it has made progress in this life (start-up takes a second or
            # more under load), at a random point of its work
            before = probe.checkpoint("balances")
            deadline = time.monotonic() + 60
            while probe.checkpoint("balances") == before and time.monotonic() < deadline:
                if not writer.is_alive() and before >= books.store.max_position():
                    break
                time.sleep(0.02)
            time.sleep(rng.uniform(0, 0.3))
            assert projector.pid is not None
            os.kill(projector.pid, signal.SIGKILL)
            projector.join()
            kills += 1
            checkpoints.append(probe.checkpoint("balances"))
            if kills > 60:
                break
        probe.close()
    writer.join(timeout=300)
    assert writer.exitcode == 0
    assert kills >= 12
    progress = sum(1 for a, b in itertools.pairwise(checkpoints) if b > a)
    assert progress >= 3, f"the projector should progress between kills: {checkpoints}"
    assert_view_equals_replay(url)


def append_in_session(
    books: Ledger, commands: list[PostEntry], before_commit: Callable[[], None]
) -> None:
    """Decide and append ``commands`` holding the store's lock, then run
    ``before_commit`` while the transaction is still open (it may raise to roll back)."""
    executor = Executor(books.store)
    prints = [(c, entry_id_for_key(c.key), fingerprint(c)) for c in commands]
    with books.store.exclusive() as session:
        decision = executor._decide_all(prints, commands, session)
        session.append(decision.batch)
        before_commit()


def test_case_12_no_skipped_positions_commit_order_and_gaps() -> None:
    url = require_postgres()
    fresh(url)
    with Ledger.open(url) as first, Ledger.open(url) as second:
        runner = ProjectionRunner.for_ledger(first, [BalancesView()], batch_size=3)
        runner.catch_up()

        def abort() -> None:
            raise RuntimeError("roll back after positions were issued")

        # A rolled-back append consumes positions that are never used: a gap.
        with pytest.raises(RuntimeError):
            append_in_session(first, transfers(1, 2, "gap"), abort)
        # Writer one takes positions and holds its transaction open; writer two's
        # append waits for the lock and gets later positions once one commits.
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:
            holding.set()
            release.wait(10)

        slow = threading.Thread(
            target=append_in_session, args=(first, transfers(2, 3, "slow"), hold)
        )
        slow.start()
        assert holding.wait(10)
        fast = threading.Thread(target=lambda: second.submit_many(transfers(3, 4, "fast")))
        fast.start()
        time.sleep(0.3)
        assert runner.catch_up() == 0  # neither uncommitted writer is visible
        release.set()
        slow.join()
        fast.join()
        assert runner.catch_up() > 0
        runner.close()
    assert_view_equals_replay(url)


def test_two_runners_on_one_view_never_apply_an_event_twice() -> None:
    url = require_postgres()
    fresh(url)
    stop = threading.Event()
    failures: list[BaseException] = []
    batches = [0, 0]

    def run(index: int) -> None:
        try:
            with Ledger.open(url, create_schema=False) as books:
                runner = ProjectionRunner.for_ledger(
                    books,
                    [BalancesView(), FeedView()],
                    batch_size=25,
                    on_flushed=lambda _: batches.__setitem__(index, batches[index] + 1),
                )
                runner.follow(stop, poll_s=0.005)
                runner.close()
        except BaseException as e:
            failures.append(e)

    runners = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in runners:
        t.start()
    writer_main(url, 600)
    time.sleep(0.5)
    stop.set()
    for t in runners:
        t.join()
    assert not failures, failures
    assert sum(batches) > 0
    assert_view_equals_replay(url)

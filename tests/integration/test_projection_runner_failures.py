"""Case 13 beyond SIGKILL: a runner whose batch or rebuild fails part-way (a projection
that raises, an edited row) and is then run again ends with views equal to a rebuild,
nothing counted twice (the balances view's keys turn a second count into a duplicate
key error; a user's projection without them would simply count twice); an edited row
stops the runner with a typed error naming its position; and a rebuild swapped in
while another runner's batch is under way (PostgreSQL) neither gets that batch written
on top of it nor fails it."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

import orjson
import pytest

from ledger import Ledger
from ledger.commands import LegInput, PostEntry
from ledger.errors import StoreError
from ledger.events import LogEvent
from ledger.projections import BalancesView, FeedView, ProjectionRunner, ViewWriter
from tests.integration.test_cli import Raw


class Counter:
    """A user's projection: how many events it has applied (one row)."""

    name = "counter"

    def __init__(self, *, fail_apply_at: int | None = None) -> None:
        self.pending = 0
        self.fail_apply_at = fail_apply_at
        self.before_flush: Any = None

    def tables(self) -> tuple[str, ...]:
        return ("rm_test_counter",)

    def create(self, w: ViewWriter, suffix: str = "") -> None:
        w.execute(
            f"CREATE TABLE IF NOT EXISTS rm_test_counter{suffix}"
            " (k INTEGER PRIMARY KEY, n BIGINT NOT NULL)"
        )

    def apply(self, event: LogEvent) -> None:
        if event.position == self.fail_apply_at:
            self.fail_apply_at = None  # once: a transient failure
            raise RuntimeError("the projection failed on this event")
        self.pending += 1

    def flush(self, w: ViewWriter, suffix: str = "") -> None:
        if self.before_flush is not None:
            self.before_flush()
        w.execute(
            f"INSERT INTO rm_test_counter{suffix} (k, n) VALUES (1, ?)"
            f" ON CONFLICT (k) DO UPDATE SET n = rm_test_counter{suffix}.n + excluded.n",
            (self.pending,),
        )
        self.pending = 0

    def discard(self) -> None:
        self.pending = 0


def counted(runner: ProjectionRunner) -> int:
    with runner.views.snapshot() as w:
        rows = w.query("SELECT n FROM rm_test_counter")
    return int(rows[0][0]) if rows else 0


def balances(runner: ProjectionRunner) -> list[tuple[Any, ...]]:
    with runner.views.snapshot() as w:
        rows = w.query("SELECT account, posted, pending_out, pending_in FROM rm_balances")
        lines = w.query("SELECT count(*) FROM rm_balance_lines")
    return [*sorted((a, int(p), int(o), int(i)) for a, p, o, i in rows), lines[0]]


def pay(books: Ledger, first: int, n: int) -> None:
    for i in range(first, first + n):
        books.transfer(f"p{i}", debit="bank", credit=f"u{i % 3}", amount="1.25", asset="USD")


def opened(url: str) -> Ledger:
    books = Ledger.open(url)
    books.open_account("bank", "USD", normal="debit")
    for u in range(3):
        books.open_account(f"u{u}", "USD", owner=f"user{u}")
    return books


def test_a_projection_failing_part_way_leaves_no_batch_behind(store_url: str) -> None:
    with opened(store_url) as books:
        pay(books, 0, 10)
        head = books.store.max_position()
        runner = ProjectionRunner.for_ledger(
            books, [BalancesView(), Counter(fail_apply_at=head - 3)]
        )
        with pytest.raises(RuntimeError):
            runner.catch_up()
        runner.catch_up()  # the failure has passed: the same events again
        live = balances(runner)
        assert counted(runner) == head
        runner.rebuild("balances")
        assert balances(runner) == live, "an event of the failed batch was counted twice"
        runner.close()


def test_a_failed_rebuild_leaves_nothing_for_the_next_catch_up(store_url: str) -> None:
    with opened(store_url) as books:
        pay(books, 0, 10)
        counter = Counter()
        runner = ProjectionRunner.for_ledger(books, [counter], batch_size=7)
        runner.catch_up()
        calls = [0]

        def second_fails() -> None:
            calls[0] += 1
            if calls[0] == 2:
                raise RuntimeError("the rebuild's write failed")

        counter.before_flush = second_fails
        with pytest.raises(RuntimeError):
            runner.rebuild("counter")
        counter.before_flush = None
        pay(books, 10, 2)
        runner.catch_up()
        assert counted(runner) == books.store.max_position()
        runner.close()


def test_an_edited_row_stops_the_runner_with_a_typed_error_naming_it(store_url: str) -> None:
    with opened(store_url) as books:
        pay(books, 0, 3)
        raw = Raw(store_url)
        position, _, state = next(r for r in raw.rows() if r[1] == "ledger:Entry:1")
        for body in (b"[]", b"{not json", orjson.dumps({**orjson.loads(state), "legs": 5})):
            raw.execute(f"UPDATE stored_events SET state = ? WHERE {raw.pos} = ?", body, position)
            runner = ProjectionRunner.for_ledger(books, [BalancesView(), FeedView()])
            with pytest.raises(StoreError, match=f"position {position}"):
                runner.catch_up()
            assert runner.checkpoint("balances") == 0
            with pytest.raises(StoreError, match=f"position {position}"):
                runner.rebuild("balances")
            runner.close()


@pytest.mark.postgres
def test_a_rebuild_swapped_in_during_another_runners_batch_is_not_added_to(pg_url: str) -> None:
    with opened(pg_url) as books:
        pay(books, 0, 12)
        rebuilt = threading.Event()
        failures: list[BaseException] = []

        def rebuild_now() -> None:
            # Another runner (its own connection) rebuilds the balances while this
            # runner's batch has read the checkpoint and not yet written the view.
            other = ProjectionRunner.for_ledger(books, [BalancesView()])
            try:
                other.rebuild("balances")
            except BaseException as e:
                failures.append(e)
            finally:
                other.close()
                rebuilt.set()

        rebuilder = threading.Thread(target=rebuild_now)

        def start_rebuild() -> None:
            rebuilder.start()
            rebuilt.wait(2)  # (with the fix the swap waits for this batch instead)

        slow = Counter()
        slow.before_flush = start_rebuild
        # the user's projection first: it flushes before the balances view does
        runner = ProjectionRunner.for_ledger(books, [slow, BalancesView()])
        runner.catch_up()
        slow.before_flush = None
        rebuilder.join(30)
        assert not failures, failures
        runner.catch_up()
        live = balances(runner)
        runner.rebuild("balances")
        assert balances(runner) == live, "the batch was written on top of the rebuild"
        runner.close()


@pytest.mark.postgres
def test_two_rebuilds_of_one_view_at_once_both_succeed(pg_url: str) -> None:
    with opened(pg_url) as books:
        books.submit_many(
            [
                PostEntry(
                    key=f"k{i}",
                    legs=(
                        LegInput(account="bank", amount=Decimal(1), asset="USD"),
                        LegInput(account="u0", amount=Decimal(-1), asset="USD"),
                    ),
                )
                for i in range(2000)
            ]
        )
        failures: list[BaseException] = []

        def rebuild() -> None:
            runner = ProjectionRunner.for_ledger(books, [BalancesView()], batch_size=100)
            try:
                runner.rebuild("balances")
            except BaseException as e:
                failures.append(e)
            finally:
                runner.close()

        threads = [threading.Thread(target=rebuild) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not failures, failures
        runner = ProjectionRunner.for_ledger(books, [BalancesView()])
        with runner.views.snapshot() as w:
            row = BalancesView.balance(w, "u0")
            assert row is not None and row.posted == 2000
            assert w.query("SELECT count(*) FROM rm_balance_lines")[0][0] == 4000
        runner.close()

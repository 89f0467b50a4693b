"""A rebuild swapped in while readers hold snapshots (PostgreSQL): a snapshot that
began before the swap, even in the middle of the rebuild, and reads the view only
after it sees the whole view as it was when the snapshot began, never a partly
filled or empty one; snapshots that begin after the swap see the rebuilt view. A
projection whose tables changed shape is still swapped in whole (its new schema)."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import pytest

from ledger import Ledger
from ledger.events import LogEvent
from ledger.projections import BalancesView, ProjectionRunner, ViewWriter

pytestmark = pytest.mark.postgres


def opened(url: str, payments: int) -> Ledger:
    books = Ledger.open(url)
    books.open_account("bank", "USD", normal="debit")
    for u in range(3):
        books.open_account(f"u{u}", "USD")
    for i in range(payments):
        books.transfer(f"p{i}", debit="bank", credit=f"u{i % 3}", amount="1.25", asset="USD")
    return books


def rows(w: ViewWriter) -> list[tuple[Any, ...]]:
    found = w.query("SELECT account, posted FROM rm_balances")
    lines = w.query("SELECT count(*) FROM rm_balance_lines")
    return [*sorted((a, int(p)) for a, p in found), int(lines[0][0])]


def test_a_snapshot_begun_before_the_swap_sees_the_whole_view(pg_url: str) -> None:
    with opened(pg_url, 30) as books:
        runner = ProjectionRunner.for_ledger(books, [BalancesView()], batch_size=20)
        runner.catch_up()
        reader = books.open_views()
        try:
            with reader.snapshot() as w:
                before = rows(w)
            # Begun (its first read) before the rebuild; reads the view after the swap.
            with reader.snapshot() as w:
                w.query("SELECT 1")
                runner.rebuild("balances")
                assert rows(w) == before, "the rebuilt view was seen empty"
            # Begun in the middle of a rebuild (after its first batch was written).
            held = ExitStack()
            begun: list[ViewWriter] = []
            view = BalancesView()
            flush = view.flush

            def flush_then_begin(w2: ViewWriter, suffix: str = "") -> None:
                flush(w2, suffix)
                if suffix and not begun:
                    begun.append(held.enter_context(reader.snapshot()))
                    begun[0].query("SELECT 1")

            view.flush = flush_then_begin  # type: ignore[method-assign]
            other = ProjectionRunner.for_ledger(books, [view], batch_size=20)
            with held:
                other.rebuild("balances")
                assert begun, "the rebuild wrote no batch before its swap"
                assert rows(begun[0]) == before, "the rebuilt view was seen part-filled"
            other.close()
            with reader.snapshot() as w:
                assert rows(w) == before
        finally:
            reader.close()
        runner.close()


class Shaped:
    """A user's projection whose table gains a column in its next version."""

    name = "shaped"

    def __init__(self, columns: str) -> None:
        self.columns = columns
        self.pending = 0

    def tables(self) -> tuple[str, ...]:
        return ("rm_test_shaped",)

    def create(self, w: ViewWriter, suffix: str = "") -> None:
        w.execute(f"CREATE TABLE IF NOT EXISTS rm_test_shaped{suffix} ({self.columns})")

    def apply(self, event: LogEvent) -> None:
        self.pending += 1

    def flush(self, w: ViewWriter, suffix: str = "") -> None:
        w.execute(
            f"INSERT INTO rm_test_shaped{suffix} (k, n) VALUES (1, ?)"
            f" ON CONFLICT (k) DO UPDATE SET n = rm_test_shaped{suffix}.n + excluded.n",
            (self.pending,),
        )
        self.pending = 0

    def discard(self) -> None:
        self.pending = 0


def test_a_rebuild_brings_a_projections_new_table_shape(pg_url: str) -> None:
    with opened(pg_url, 5) as books:
        old = ProjectionRunner.for_ledger(books, [Shaped("k INTEGER PRIMARY KEY, n BIGINT")])
        old.catch_up()
        old.close()
        new_shape = "k INTEGER PRIMARY KEY, n BIGINT, note TEXT DEFAULT 'v2'"
        runner = ProjectionRunner.for_ledger(books, [Shaped(new_shape)])
        runner.rebuild("shaped")
        with runner.views.snapshot() as w:
            assert w.query("SELECT n, note FROM rm_test_shaped") == [
                (books.store.max_position(), "v2")
            ]
        runner.close()

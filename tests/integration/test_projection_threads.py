"""One ProjectionRunner used from several threads, as a worker does: ``follow`` in
one thread while another asks for ``lag`` and runs ``rebuild``, and writers write.
They take turns; the view equals a plain replay of the log at the end."""

from __future__ import annotations

import threading

from ledger import Ledger
from ledger.events import LogEvent
from ledger.projections import BalancesView, ProjectionRunner
from tests.property.test_views_machine import plain_replay


def test_follow_lag_and_rebuild_from_several_threads(store_url: str) -> None:
    with Ledger.open(store_url) as books:
        books.open_account("bank", "USD", normal="debit")
        for u in range(5):
            books.open_account(f"u{u}", "USD")
        runner = ProjectionRunner.for_ledger(books, [BalancesView()], batch_size=7)
        stop = threading.Event()
        follower = threading.Thread(
            target=runner.follow, args=(stop,), kwargs={"poll_s": 0.001, "linger_s": 0}
        )
        errors: list[BaseException] = []

        def write() -> None:
            try:
                for i in range(300):
                    books.transfer(
                        f"t{i}", debit="bank", credit=f"u{i % 5}", amount="1.25", asset="USD"
                    )
            except BaseException as e:
                errors.append(e)

        writer = threading.Thread(target=write)
        follower.start()
        writer.start()
        try:
            for _ in range(5):
                runner.rebuild("balances")
                runner.lag()
            writer.join(60)
        finally:
            stop.set()
            follower.join(60)
        assert not errors and not follower.is_alive()
        runner.catch_up()
        events = [LogEvent.from_notification(n) for n in books.store.read_log(0, 1_000_000)]
        with runner.views.snapshot() as w:
            for name in ("bank", *(f"u{u}" for u in range(5))):
                row = BalancesView.balance(w, name)
                assert row is not None
                got = tuple(int(v.scaleb(2)) for v in (row.posted, row.pending_out, row.pending_in))
                assert got == plain_replay(events, name, None, "recorded"), name
        runner.close()

"""Read models against a plain replay: random command sequences (the ledger state
machine's rules plus backdated entries), then after every catch-up and every rebuild
the balances view equals what a plain model computes from the log, now and as of
past instants by effective time, by recorded time, and both."""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import rule

from ledger import Ledger
from ledger.commands import PostEntry
from ledger.events import TOPIC_ACCOUNT_OPENED, TOPIC_ENTRY, LogEvent
from ledger.projections import BalancesView, ProjectionRunner
from tests.conftest import require_postgres, reset_postgres
from tests.property.test_ledger_machine import ACCOUNTS, SCALES, START, LedgerMachine


def existed(
    events: list[LogEvent],
    account: str,
    at: datetime,
    by: str,
    known_at: datetime | None = None,
) -> bool:
    """Whether ``account`` has a balance as of ``at``: opened by then, or moved by an
    entry counted by then (backdated before its opening; with ``known_at``, recorded
    by then too)."""
    for e in events:
        if e.topic == TOPIC_ACCOUNT_OPENED and e.body["account"] == account:
            if datetime.fromisoformat(e.body["at"]) <= at:
                return True
        elif e.topic == TOPIC_ENTRY:
            when = datetime.fromisoformat(
                e.body["effective_at" if by == "effective" else "recorded_at"]
            )
            touched = {leg[0] for leg in (*e.body["legs"], *e.body["releases"])}
            known = known_at is None or datetime.fromisoformat(e.body["recorded_at"]) <= known_at
            if when <= at and known and account in touched:
                return True
    return False


def plain_replay(
    events: list[LogEvent],
    account: str,
    at: datetime | None,
    by: str,
    known_at: datetime | None = None,
) -> tuple[int, int, int]:
    """Balances of ``account`` straight from the log: no projection code involved."""
    sign = 0
    posted = out = inn = 0
    for e in events:
        if e.topic == TOPIC_ACCOUNT_OPENED and e.body["account"] == account:
            sign = 1 if e.body["normal"] == "debit" else -1
        if e.topic != TOPIC_ENTRY:
            continue
        when = datetime.fromisoformat(
            e.body["effective_at" if by == "effective" else "recorded_at"]
        )
        if at is not None and when > at:
            continue
        if known_at is not None and datetime.fromisoformat(e.body["recorded_at"]) > known_at:
            continue
        pending_legs = e.body["kind"] == "pending"
        moves = [(r, True, -1) for r in e.body["releases"]] + [
            (r, pending_legs, 1) for r in e.body["legs"]
        ]
        for (name, _, amount), pending, direction in moves:
            if name != account:
                continue
            oriented = sign * int(amount) * direction
            if not pending:
                posted += oriented
            elif sign * int(amount) < 0:
                out += -oriented
            else:
                inn += oriented
    return posted, out, inn


class ViewMachine(LedgerMachine):
    """The ledger machine, plus read-model checks."""

    def __init__(self) -> None:
        super().__init__()
        self.runner = ProjectionRunner.for_ledger(self.books, [BalancesView()], batch_size=7)

    def teardown(self) -> None:
        self.runner.close()
        super().teardown()

    @rule()
    def reopen(self) -> None:
        """Restart both: the new runner resumes from its committed checkpoint."""
        self.runner.close()
        super().reopen()
        self.runner = ProjectionRunner.for_ledger(self.books, [BalancesView()], batch_size=7)

    @rule(
        src=st.sampled_from(ACCOUNTS),
        dst=st.sampled_from(ACCOUNTS),
        amount=st.integers(1, 500),
        days=st.integers(1, 40),
    )
    def backdated_transfer(self, src: str, dst: str, amount: int, days: int) -> None:
        legs = [(src, amount), (dst, -amount)]
        key = self.key("back")
        cmd = PostEntry(
            key=key, legs=self._legs(legs, "USD"), effective_at=self.now - timedelta(days=days)
        )
        self.submit(key, cmd, self._expect(legs, "USD", pending=False))

    def _compare(self) -> None:
        events = [LogEvent.from_notification(n) for n in self.books.store.read_log(0, 1_000_000)]
        instants = sorted(
            {
                datetime.fromisoformat(e.body["recorded_at"])
                for e in events
                if e.topic == TOPIC_ENTRY
            }
        )
        probes = [START - timedelta(days=20), START, *instants[-3:]]
        with self.runner.views.snapshot() as w:
            for name, acct in self.model.accounts.items():
                row = BalancesView.balance(w, name)
                assert row is not None, name
                scale = SCALES[acct.asset]
                got = tuple(
                    int(v.scaleb(scale)) for v in (row.posted, row.pending_out, row.pending_in)
                )
                assert got == (acct.posted, acct.out, acct.inn), name
                assert got == plain_replay(events, name, None, "recorded")
                for at in probes:
                    for by in ("effective", "recorded"):
                        past = BalancesView.balance_as_of(w, name, at, by=by)  # type: ignore[arg-type]
                        if not existed(events, name, at, by):
                            assert past is None, (name, at, by)
                            continue
                        assert past is not None, (name, at, by)
                        expect = plain_replay(events, name, at, by)
                        assert (
                            tuple(
                                int(v.scaleb(scale))
                                for v in (past.posted, past.pending_out, past.pending_in)
                            )
                            == expect
                        )
                    both = BalancesView.balance_as_of(w, name, at, by="effective", known_at=START)
                    if not existed(events, name, at, "effective", START):
                        assert both is None, (name, at)
                        continue
                    assert both is not None, (name, at)
                    assert (
                        int(both.posted.scaleb(scale))
                        == plain_replay(events, name, at, "effective", START)[0]
                    )

    @rule()
    def catch_up_and_compare(self) -> None:
        self.runner.catch_up()
        self._compare()

    @rule()
    def rebuild_and_compare(self) -> None:
        self.runner.rebuild("balances")
        self.runner.catch_up()
        self._compare()


def _settings(examples: int, steps: int) -> settings:
    return settings(
        max_examples=int(os.environ.get("LEDGER_MACHINE_EXAMPLES", str(examples))),
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


def test_views_equal_replay_on_sqlite() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        counter = [0]

        class Fresh(ViewMachine):
            def __init__(self) -> None:
                counter[0] += 1
                type(self).url = f"sqlite:///{tmp}/views{counter[0]}.db"
                super().__init__()

        Fresh.TestCase.settings = _settings(50, 40)
        Fresh.TestCase().runTest()


@pytest.mark.postgres
def test_views_equal_replay_on_postgres() -> None:
    url = require_postgres()

    class Fresh(ViewMachine):
        def __init__(self) -> None:
            Ledger.open(url).close()
            reset_postgres(url)
            type(self).url = url
            super().__init__()

    Fresh.TestCase.settings = _settings(20, 30)
    Fresh.TestCase().runTest()

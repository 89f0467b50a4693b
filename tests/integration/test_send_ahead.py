"""On PostgreSQL the committer thread decides the next group while the previous one's
append is in flight, and sends it as soon as that one committed (see
:mod:`ledger.commands.group_commit`). Against the real server:

* a group decided ahead on states the group in flight touches is decided again, not
  sent: one process never conflicts with itself, and every balance is exact;
* a group in flight that fails (another writer moved its accounts) is redone, and the
  group decided ahead of it is decided again on fresh state: every key applies once;
* dropping the connection while groups are in flight loses nothing that returned
  success and applies nothing twice.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from decimal import Decimal

import psycopg
import pytest

from ledger import Ledger, Outcome
from ledger.commands import OpenAccount, PostEntry, group_commit
from ledger.projections.audit import audit

pytestmark = pytest.mark.postgres

FUNDS = 1000


@pytest.fixture
def url(pg_url: str) -> str:
    return pg_url


def _entry(key: str, debit: str, credit: str, amount: int = 1) -> PostEntry:
    value = Decimal(amount)
    return PostEntry.model_validate(
        {
            "key": key,
            "legs": [
                {"account": debit, "amount": value, "asset": "USD"},
                {"account": credit, "amount": -value, "asset": "USD"},
            ],
        }
    )


def _payment(key: str, src: int, dst: int) -> PostEntry:
    return _entry(key, f"a{src}", f"a{dst}")


def _setup(books: Ledger, accounts: int) -> None:
    books.open_account("bank", "USD", normal="debit")
    books.submit_many(
        [
            OpenAccount(key=f"open-{a}", account=f"a{a}", asset="USD", min_balance=Decimal(0))
            for a in range(accounts)
        ]
    )
    funds = [_entry(f"fund-{a}", "bank", f"a{a}", FUNDS) for a in range(accounts)]
    assert all(o.ok for o in books.submit_many(funds))


def _in_threads(
    books: Ledger, prefix: str, threads: int, each: int, accounts: int, hot: int | None = None
) -> list[tuple[PostEntry, Outcome]]:
    """``threads`` callers, ``each`` payments apiece between random accounts (all into
    account ``hot`` when given)."""
    results: list[tuple[PostEntry, Outcome]] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def caller(t: int) -> None:
        rnd = random.Random(t)
        start.wait()
        for i in range(each):
            src, dst = rnd.sample(range(accounts), 2)
            if hot is not None:
                src = dst if src == hot else src
                dst = hot
            cmd = _payment(f"{prefix}-{t}-{i}", src, dst)
            outcome = books.submit(cmd)
            with lock:
                results.append((cmd, outcome))

    workers = [threading.Thread(target=caller, args=(t,), daemon=True) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert not w.is_alive(), "a caller was left waiting"
    return results


def _expected(results: list[tuple[PostEntry, Outcome]], accounts: int) -> dict[str, Decimal]:
    """Each account's balance after the applied payments (credits add: the accounts
    are credit-normal)."""
    balance = {f"a{a}": Decimal(FUNDS) for a in range(accounts)}
    for cmd, outcome in results:
        if outcome.status == "applied":
            debit, credit = cmd.legs
            balance[debit.account] -= debit.amount
            balance[credit.account] += -credit.amount
    return balance


def test_groups_decided_ahead_never_conflict_within_one_process(url: str) -> None:
    accounts = 400
    with Ledger.open(url) as books:
        _setup(books, accounts)
        results = _in_threads(books, "p", threads=16, each=40, accounts=accounts)
        stats = books.group_commit_stats
        assert all(o.ok and not o.replayed for _, o in results)
        # Both paths ran: groups sent ahead, and groups that shared an account with
        # the group in flight, decided again once it committed.
        assert stats.sent_ahead > 0
        assert stats.sent_ahead < stats.commits
        assert stats.redone == 0  # never a conflict with itself
        expected = _expected(results, accounts)
        for name, value in expected.items():
            assert books.balance(name).posted == value
        assert audit(books.store).clean


def test_a_hot_account_in_every_group_is_never_sent_ahead_on_stale_state(url: str) -> None:
    accounts = 50
    with Ledger.open(url) as books:
        _setup(books, accounts)
        results = _in_threads(books, "h", threads=12, each=30, accounts=accounts, hot=7)
        stats = books.group_commit_stats
        assert all(o.ok for _, o in results)
        assert stats.redone == 0
        assert books.balance("a7").posted == _expected(results, accounts)["a7"]
        assert audit(books.store).clean


def test_a_failed_group_in_flight_has_the_group_decided_ahead_decided_again(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No careful spell after a conflict: groups keep being decided ahead, so conflicts
    # meet groups decided ahead of them.
    monkeypatch.setattr(group_commit, "CAREFUL_S", 0.0)
    accounts = 200
    with Ledger.open(url) as books, Ledger.open(url, create_schema=False) as other:
        _setup(books, accounts)
        done = threading.Event()
        theirs: list[tuple[PostEntry, Outcome]] = []

        def other_writer() -> None:  # another process's cache: conflicts on both sides
            rnd = random.Random(99)
            i = 0
            while not done.is_set():
                src, dst = rnd.sample(range(accounts), 2)
                cmd = _payment(f"o-{i}", src, dst)
                theirs.append((cmd, other.submit(cmd)))
                i += 1

        writer = threading.Thread(target=other_writer)
        writer.start()
        try:
            mine = _in_threads(books, "m", threads=16, each=30, accounts=accounts)
            # The same keys again, from both sides: each replays the one outcome.
            again = _in_threads(books, "m", threads=16, each=30, accounts=accounts)
        finally:
            done.set()
            writer.join()
        assert all(o.ok for _, o in mine) and all(o.replayed for _, o in again)
        assert books.group_commit_stats.redone > 0  # the other writer did cause conflicts
        expected = _expected(mine + theirs, accounts)
        for name, value in expected.items():
            assert books.balance(name).posted == value
        assert audit(books.store).clean


def test_dropping_the_connection_with_groups_in_flight_applies_each_payment_once(
    url: str,
) -> None:
    accounts = 300
    with Ledger.open(url) as books:
        _setup(books, accounts)
        done = threading.Event()

        def dropper() -> None:
            while not done.wait(0.05):
                connection = books._committer._connection  # type: ignore[attr-defined]
                conn = None if connection is None else connection._conn
                if conn is None or conn.closed:
                    continue
                with psycopg.connect(url, autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))

        killer = threading.Thread(target=dropper)
        killer.start()
        try:
            results = _in_threads(books, "d", threads=16, each=80, accounts=accounts)
        finally:
            done.set()
            killer.join()
        assert books.group_commit_stats.redone > 0  # connections were dropped mid-write
        assert all(o.ok for _, o in results)
    with Ledger.open(url) as books:  # a fresh process's view: from the log alone
        expected = _expected(results, accounts)
        for name, value in expected.items():
            assert books.balance(name).posted == value
        keys = Counter(cmd.key for cmd, _ in results)
        assert max(keys.values()) == 1
        for cmd, _ in results[:50]:
            assert books.submit(cmd).replayed
        assert audit(books.store).clean

"""On PostgreSQL the group commit's thread reads and appends on a connection of its
own (:class:`ledger.adapters.pg_appenders.PostgresCommitterConnection`), against the
real server: every group goes through it rather than the pool (its reads too, after
a conflict), a dropped connection is redone and opened again, a conflict (the guard,
or a key's primary key) and a statement the server cancels keep the connection, and
closing the ledger closes it."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from ledger import Ledger, Outcome
from ledger.commands import LegInput, PostEntry
from ledger.projections.audit import audit
from tests.contract.test_online_group_commit import WALLETS, payment, setup, total

pytestmark = pytest.mark.postgres


@pytest.fixture
def url(pg_url: str) -> str:
    return pg_url


def _in_threads(books: Ledger, prefix: str, count: int) -> list[Outcome]:
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def caller(i: int) -> None:
        outcome = books.submit(payment(f"{prefix}-{i}", i % WALLETS, (i + 1) % WALLETS))
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def _backends(url: str, name: str) -> int:
    """Connections to the database named ``name`` (application_name): only this
    test's, whatever other tests run beside it."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s",
            (name,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_groups_are_read_and_appended_on_the_threads_own_connection(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Ledger.open(url) as books:
        through_store: list[str] = []
        store: Any = books.store
        for name in ("append", "read", "load_streams"):
            real = getattr(store, name)

            def counted(*args: Any, _real: Any = real, _name: str = name) -> Any:
                through_store.append(_name)
                return _real(*args)

            monkeypatch.setattr(store, name, counted)
        setup(books)  # reads every account it opens (none cached yet)
        # A group after a conflict reads its states again (careful mode).
        books._committer._careful_until = float("inf")  # type: ignore[attr-defined]
        outcomes = _in_threads(books, "own", 24)
        assert all(o.ok and not o.replayed for o in outcomes)
        assert books.group_commit_stats.commits >= 1
        assert through_store == []  # every read and append went through the thread's
        assert total(books) == Decimal(100 * WALLETS)
        assert audit(books.store).clean


def _connection_of(books: Ledger) -> Any:
    return books._committer._connection  # type: ignore[attr-defined]


def test_a_dropped_connection_is_redone_and_reopened(url: str) -> None:
    def drop_connections() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )

    with Ledger.open(url) as books:
        setup(books, funds="1000")
        outcomes: list[Outcome] = []
        seen = []

        def one_round(prefix: str) -> None:
            nonlocal outcomes
            outcomes += _in_threads(books, prefix, 10)
            # The first group after a drop fails and is redone through the pool; one
            # more group afterwards goes through the thread's connection, opened again.
            outcomes.append(books.submit(payment(f"{prefix}-tail", 2, 3)))
            seen.append(_connection_of(books)._conn)

        for round_ in range(3):
            one_round(f"r{round_}")
            drop_connections()
        one_round("after")
        redone = books.group_commit_stats.redone
        # Each drop cost the next group one failed append; the connection was opened
        # again each time and the groups after it went through it.
        assert 1 <= redone <= 3
        assert len({id(conn) for conn in seen}) == 4
        assert not seen[-1].closed and not seen[-1].broken
        assert all(conn.closed for conn in seen[:-1])
    assert all(o.ok and not o.replayed for o in outcomes)
    with Ledger.open(url) as books:
        assert total(books) == Decimal(1000 * WALLETS)
        keys = {o.key for o in outcomes}
        assert len(keys) == 44
        for round_ in ("r0", "r1", "r2", "after"):  # i = 0 paid w0 -> w1
            assert books.submit(payment(f"{round_}-0", 0, 1)).replayed
        assert audit(books.store).clean


def test_a_key_taken_by_another_process_is_redone_on_the_same_connection(url: str) -> None:
    with Ledger.open(url) as books, Ledger.open(url, create_schema=False) as other:
        setup(books, funds="1")
        books.submit(payment("warm", 0, 1))  # w0 is cached, its funds spent
        connection = _connection_of(books)._conn
        # Another process records a rejection under key "k". This process decides the
        # same request on its cache (keys are not read), also a rejection, and its
        # append hits the key's primary key: a conflict, redone, replaying the record.
        first = other.submit(payment("k", 0, 1, amount="5"))
        assert first.status == "rejected"
        again = books.submit(payment("k", 0, 1, amount="5"))
        assert again.status == "rejected" and again.replayed
        assert books.group_commit_stats.redone == 1
        # A conflict (not an unavailable store): groups read their states for a while.
        assert books._committer._careful_until > time.monotonic()  # type: ignore[attr-defined]
        assert _connection_of(books)._conn is connection and not connection.closed


def test_groups_that_read_their_states_leave_the_keys_to_the_guard(url: str) -> None:
    with Ledger.open(url) as books, Ledger.open(url, create_schema=False) as other:
        setup(books)
        # After a conflict, groups read their states again but not their keys: a key
        # another process applied fails the append, and the group is run again with
        # its keys read, replaying that outcome (applied once, in all).
        books._committer._careful_until = float("inf")  # type: ignore[attr-defined]
        first = other.submit(payment("k", 0, 1))
        assert first.ok
        again = books.submit(payment("k", 0, 1))
        assert again.ok and again.replayed and again.entry_id == first.entry_id
        assert books.group_commit_stats.redone == 1
        assert books.submit(payment("k2", 0, 1)).ok  # and a new key applies at once
        assert books.group_commit_stats.redone == 1
        assert total(books) == Decimal(100 * WALLETS)
        assert books.balance("w0").posted == Decimal(98)
        assert audit(books.store).clean


@pytest.mark.parametrize("careful", [False, True])
def test_a_state_cached_ahead_of_the_store_is_refused_then_read_again(
    url: str, careful: bool
) -> None:
    """Should a process's cache hold an account at a version the store never got, the
    append refuses to skip a version (every stream read is checked, written or not),
    and a group that reads its states finds the store's version (another version,
    not only a newer one, comes back)."""
    with Ledger.open(url) as first:
        setup(first)
    with Ledger.open(url) as books:
        assert books.submit(payment("warm", 0, 1)).ok
        books._executor.cache.accounts["w0"].version += 1  # type: ignore[attr-defined]
        if careful:
            books._committer._careful_until = float("inf")  # type: ignore[attr-defined]
        assert books.submit(payment("after", 0, 1)).ok
        assert books.group_commit_stats.redone == (0 if careful else 1)
        assert books.balance("w0").posted == Decimal(98)
        assert total(books) == Decimal(100 * WALLETS)
        assert audit(books.store).clean


def test_a_state_cached_ahead_of_a_stream_still_at_its_first_version_is_read_again(
    url: str,
) -> None:
    with Ledger.open(url) as first:
        setup(first)
        first.open_account("fresh", "USD", min_balance="0")
    with Ledger.open(url) as books:
        out = books.submit(
            PostEntry(
                key="from-empty",
                legs=(
                    LegInput(account="fresh", amount=Decimal(1), asset="USD"),
                    LegInput(account="w0", amount=Decimal(-1), asset="USD"),
                ),
            )
        )
        assert out.status == "rejected"  # "fresh" read (version 1) and cached
        books._executor.cache.accounts["fresh"].version += 1  # type: ignore[attr-defined]
        books._committer._careful_until = float("inf")  # type: ignore[attr-defined]
        into = PostEntry(
            key="into-fresh",
            legs=(
                LegInput(account="w0", amount=Decimal(5), asset="USD"),
                LegInput(account="fresh", amount=Decimal(-5), asset="USD"),
            ),
        )
        assert books.submit(into).ok
        assert books.group_commit_stats.redone == 0  # the read found version 1
        assert books.balance("fresh").posted == Decimal(5)
        assert audit(books.store).clean


def test_a_statement_the_server_cancels_keeps_the_connection(url: str) -> None:
    with Ledger.open(url) as books:
        setup(books)
        books.submit(payment("warm", 0, 1))
        connection = _connection_of(books)._conn
        pid = connection.info.backend_pid
        # Hold the writers' lock; cancel the committer's append while it waits.
        with psycopg.connect(url, autocommit=True) as holder, holder.transaction():
            holder.execute("SELECT pg_advisory_xact_lock(%s)", (books.store._write_lock_key,))  # type: ignore[attr-defined]
            done: list[Outcome] = []
            writer = threading.Thread(target=lambda: done.append(books.submit(payment("c", 0, 2))))
            writer.start()
            with psycopg.connect(url, autocommit=True) as admin:
                deadline = time.monotonic() + 30
                while True:
                    row = admin.execute(
                        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
                    ).fetchone()
                    if row is not None and row[0] == "Lock":
                        break
                    assert time.monotonic() < deadline, "the append never waited on the lock"
                    time.sleep(0.01)
                admin.execute("SELECT pg_cancel_backend(%s)", (pid,))
        writer.join()
        assert done[0].ok and not done[0].replayed  # redone once the lock was free
        assert books.group_commit_stats.redone == 1
        assert _connection_of(books)._conn is connection and not connection.closed


def test_a_conflict_keeps_the_connection(url: str) -> None:
    with Ledger.open(url) as books, Ledger.open(url, create_schema=False) as other:
        setup(books)
        books.submit(payment("warm", 0, 1))  # the thread's connection is open
        appender: Any = _connection_of(books)
        connection = appender._conn
        assert connection is not None
        # Another writer moves w0 on: this ledger's cached state of it is stale, so
        # its next append fails the guard and is redone on fresh state.
        assert other.submit(payment("other", 0, 2)).ok
        outcome = books.submit(payment("after", 0, 1))
        assert outcome.ok and not outcome.replayed
        assert books.group_commit_stats.redone == 1
        assert appender._conn is connection and not connection.closed
        assert total(books) == Decimal(100 * WALLETS)


def test_closing_the_ledger_closes_the_connection(url: str) -> None:
    name = f"ledger-close-test-{time.time_ns()}"
    books = Ledger.open(f"{url}?application_name={name}")
    setup(books)
    assert books.submit(payment("one", 0, 1)).ok
    appender: Any = books._committer._connection  # type: ignore[attr-defined]
    assert appender._conn is not None and not appender._conn.closed
    assert _backends(url, name) >= 2  # the pool's and the committer's
    books.close()
    assert appender._conn is None
    # A backend leaves pg_stat_activity as it exits, just after the client closes.
    deadline = time.monotonic() + 5
    while _backends(url, name) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _backends(url, name) == 0

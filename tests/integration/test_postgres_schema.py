"""A ledger lives wholly in one PostgreSQL schema: the connection's ``current_schema()``
at open (the ``search_path`` of the URL's ``options``, the role or the database).
Two schemas of one database are two independent ledgers: events, idempotency keys,
holds, balances, read models and their checkpoints, the audit and the NOTIFY channel
are each schema's own. A search_path that gives the ledger no schema of its own, or
an earlier release's split layout, is refused with StoreError."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from ledger import AsyncLedger, Ledger
from ledger.errors import BalanceRuleViolated, StoreError, UnknownAccount
from ledger.projections import BalancesView, ProjectionRunner
from ledger.projections.audit import audit
from tests.conftest import require_postgres

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def with_path(url: str, search_path: str) -> str:
    return f"{url}?options={quote(f'-c search_path={search_path}', safe='')}"


@pytest.fixture
def db() -> Iterator[str]:
    """A database of this module's own, with empty schemas ``ta`` and ``tb`` and an
    empty ``public``."""
    url = require_postgres("schemas")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS ta, tb, tc CASCADE")
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
        conn.execute("CREATE SCHEMA ta")
        conn.execute("CREATE SCHEMA tb")
    yield url


def objects(url: str) -> dict[str, set[str]]:
    """The relations, functions and types of each schema but the system's."""
    found: dict[str, set[str]] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " UNION ALL SELECT n.nspname, p.proname || '()' FROM pg_proc p"
            " JOIN pg_namespace n ON n.oid = p.pronamespace"
            " UNION ALL SELECT n.nspname, t.typname FROM pg_type t"
            " JOIN pg_namespace n ON n.oid = t.typnamespace"
        ).fetchall()
    for schema, name in rows:
        if not schema.startswith("pg_") and schema != "information_schema":
            found.setdefault(schema, set()).add(name)
    return found


def setup(books: Ledger, funds: str) -> None:
    books.open_account("bank", "USD", normal="debit")
    for name in ("w", "v"):
        books.open_account(name, "USD", min_balance="0")
    books.transfer("fund-w", debit="bank", credit="w", amount=funds, asset="USD")


def test_two_schemas_are_two_independent_ledgers(db: str) -> None:
    a_url, b_url = with_path(db, "ta"), with_path(db, "tb")
    with Ledger.open(a_url, clock=lambda: NOW) as a:
        assert a.store.schema == "ta"  # type: ignore[attr-defined]
        setup(a, "10")
        with pytest.raises(BalanceRuleViolated):  # a rejection: a key row, no event
            a.transfer("over", debit="w", credit="v", amount="100", asset="USD")
        a.hold("h1", [("w", "2", "USD"), ("v", "-2", "USD")], expires_at=NOW + timedelta(hours=1))
        a.open_account("tenant-a-only", "USD")
    with Ledger.open(b_url, clock=lambda: NOW) as b:
        assert b.store.schema == "tb"  # type: ignore[attr-defined]
        with pytest.raises(UnknownAccount):
            b.balance("tenant-a-only")
        assert b.recorded("fund-w") is None and b.recorded("over") is None
        setup(b, "3")  # the same names and keys: this ledger's own
        moved = b.transfer("over", debit="w", credit="v", amount="1", asset="USD")
        assert moved.ok and not moved.replayed  # not ta's rejection under that key
        assert b.due_expiries(NOW + timedelta(hours=2)) == []  # ta's hold is not here
    with Ledger.open(a_url, clock=lambda: NOW) as a, Ledger.open(b_url) as b:
        assert (a.balance("w").posted, a.balance("w").pending_out) == (10, 2)
        assert (b.balance("w").posted, b.balance("v").posted) == (2, 1)
        with pytest.raises(BalanceRuleViolated):  # ta's rejection replays in ta
            a.transfer("over", debit="w", credit="v", amount="100", asset="USD")
        assert len(a.due_expiries(NOW + timedelta(hours=2))) == 1
        a_events, b_events = a.store.read_log(0, 1000), b.store.read_log(0, 1000)
        for events in (a_events, b_events):  # each log's own positions, from 1
            assert [n.id for n in events] == list(range(1, len(events) + 1))
        assert a.store.max_position() == len(a_events) != len(b_events)
        a_audit, b_audit = audit(a.store), audit(b.store)
        assert a_audit.clean and b_audit.clean
        assert (a_audit.events, b_audit.events) == (len(a_events), len(b_events))
        for books, posted in ((a, Decimal(10)), (b, Decimal(2))):
            runner = ProjectionRunner.for_ledger(books, [BalancesView()])
            try:
                runner.catch_up()
                with runner.views.snapshot() as w:
                    row = BalancesView.balance(w, "w")
                    tenant = BalancesView.balance(w, "tenant-a-only")
                    (checkpoint,) = w.query("SELECT position FROM ledger_checkpoints")
            finally:
                runner.close()
            assert row is not None and row.posted == posted
            assert (tenant is not None) == (books is a)
            assert checkpoint[0] == books.store.max_position()
    found = objects(db)
    assert found.get("public", set()) == set()  # nothing of either ledger in public
    for schema in ("ta", "tb"):
        assert {
            "stored_events",
            "stored_events_notification_id_seq",
            "stored_event_uuid",
            "ledger_keys",
            "ledger_open_holds",
            "ledger_append_v2()",
            "ledger_checkpoints",
            "rm_balances",
        } <= found[schema]


def test_the_search_path_of_the_database_or_role_is_honoured(db: str) -> None:
    name = db.rpartition("/")[2]
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" SET search_path = tb')
    try:
        with Ledger.open(db) as books:
            assert books.store.schema == "tb"  # type: ignore[attr-defined]
            books.open_account("cash", "USD")
    finally:
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" RESET search_path')
    with Ledger.open(with_path(db, "tb")) as tb, Ledger.open(db) as public:
        assert public.store.schema == "public"  # type: ignore[attr-defined]
        assert tb.balance("cash").status == "open"
        with pytest.raises(UnknownAccount):
            public.balance("cash")


def test_notifications_stay_within_their_schema(db: str) -> None:
    with Ledger.open(with_path(db, "ta")) as a, Ledger.open(with_path(db, "tb")) as b:
        channels = a.store.channel, b.store.channel  # type: ignore[attr-defined]
        assert channels == ("ta.stored_events", "tb.stored_events")
        with psycopg.connect(db, autocommit=True) as listener:
            for channel in channels:
                listener.execute(f'LISTEN "{channel}"')
            b.open_account("cash", "USD")  # the append function's notify
            heard = {n.channel for n in listener.notifies(timeout=1, stop_after=1)}
            assert heard == {"tb.stored_events"}
            store: Any = a.store
            store.fits_one_call = lambda batch: False  # the COPY path's NOTIFY
            a.open_account("cash", "USD")
            heard = {n.channel for n in listener.notifies(timeout=1, stop_after=1)}
            assert heard == {"ta.stored_events"}


def test_every_write_path_stays_in_the_schema(db: str) -> None:
    """The COPY path (lock, check, keys, holds) and an event loop's appender write to
    the ledger's schema, as the append function does."""
    with Ledger.open(with_path(db, "ta"), clock=lambda: NOW) as a:
        store: Any = a.store
        store.fits_one_call = lambda batch: False
        setup(a, "10")
        with pytest.raises(BalanceRuleViolated):
            a.transfer("over", debit="w", credit="v", amount="100", asset="USD")
        later = NOW + timedelta(hours=1)
        hold = a.hold("h1", [("w", "2", "USD"), ("v", "-2", "USD")], expires_at=later)
        assert [e.hold_id for e in a.due_expiries(later)] == [hold.entry_id]
        assert a.void_hold("void", hold.entry_id).ok
        assert a.due_expiries(later) == []

    async def main() -> None:
        async with await AsyncLedger.open(with_path(db, "tb")) as b:
            await b.open_account("async-only", "USD")

    asyncio.run(main())
    with psycopg.connect(db, autocommit=True) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM ta.stored_events), (SELECT count(*) FROM ta.ledger_keys),"
            " (SELECT count(*) FROM ta.ledger_open_holds), (SELECT count(*) FROM tb.stored_events)"
        ).fetchone()
    assert counts is not None
    assert counts[0] > 4 and counts[1] >= 1  # events, keys (the rejection among them)
    assert counts[2:] == (0, 1)  # the hold voided; the event loop wrote to tb
    with Ledger.open(with_path(db, "ta")) as a:
        with pytest.raises(UnknownAccount):
            a.balance("async-only")
        assert audit(a.store).clean


def test_read_models_are_never_read_from_another_schema(db: str) -> None:
    """With ``search_path=ta,public`` a read model missing in ``ta`` is missing: not
    the table of the same name in ``public`` (another ledger's)."""
    with Ledger.open(db) as public:
        setup(public, "7")
        runner = ProjectionRunner.for_ledger(public, [BalancesView()])
        runner.catch_up()
        runner.close()
    with Ledger.open(with_path(db, "ta,public")) as a:
        assert a.store.schema == "ta"  # type: ignore[attr-defined]
        views = a.open_views()
        try:
            with pytest.raises(StoreError, match="rm_balances"), views.snapshot() as w:
                BalancesView.balance(w, "w")
        finally:
            views.close()


@pytest.mark.parametrize(
    ("search_path", "says"),
    [
        ("nowhere", r"no schema of the search_path \(nowhere\) exists"),
        ("pg_catalog", "system schema 'pg_catalog'"),
    ],
)
def test_a_search_path_without_a_schema_for_the_ledger_is_refused(
    db: str, search_path: str, says: str
) -> None:
    with pytest.raises(StoreError, match=says):
        Ledger.open(with_path(db, search_path))


def test_a_schema_named_with_white_space_around_it_is_refused(db: str) -> None:
    """eventsourcing strips the schema's name: its tables would land in the neighbour
    ``ta`` while the ledger's go in ``'ta '``."""
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute('CREATE SCHEMA IF NOT EXISTS "ta "')
    with pytest.raises(StoreError, match="white space"):
        Ledger.open(with_path(db, '"ta\\ "'))  # libpq's options escape the space
    assert objects(db).get("ta", set()) == set()


def test_an_earlier_releases_split_layout_is_refused(db: str) -> None:
    """Earlier releases put the events in public.stored_events and the keys in the
    search_path's schema: opened now, that schema would show an empty ledger."""
    with Ledger.open(db) as public:
        public.open_account("cash", "USD")
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE ta.ledger_keys (key_id uuid PRIMARY KEY, key text NOT NULL,"
            " fingerprint text NOT NULL, outcome bytea NOT NULL)"
        )
    with pytest.raises(StoreError, match=r"schema 'ta' holds ledger_keys .* public.stored_events"):
        Ledger.open(with_path(db, "ta"))
    with Ledger.open(with_path(db, "tb")) as tb, pytest.raises(UnknownAccount):
        tb.balance("cash")  # a schema of its own: a new ledger


def test_a_schema_the_role_cannot_create_in_is_a_store_error(db: str) -> None:
    role = f"ledger_ro_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA tc")
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT USAGE ON SCHEMA tc TO {role}")
    try:
        base, _, rest = db.partition("://")
        host = rest.partition("@")[2]
        url = with_path(f"{base}://{role}@{host}", "tc")
        with pytest.raises(StoreError, match="tc") as raised:
            Ledger.open(url)
        assert "permission denied" in str(raised.value)
    finally:
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("DROP SCHEMA tc CASCADE")
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_the_public_schema_keeps_the_channel_listeners_already_hear() -> None:
    from ledger.adapters.postgres_store import notify_channel

    assert notify_channel("public") == "stored_events"
    assert notify_channel("ta") == "ta.stored_events"

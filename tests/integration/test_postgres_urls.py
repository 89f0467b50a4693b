"""PostgreSQL connection settings reach the connection as given: libpq parses the URL
(every parameter kept, unknown ones refused), a refused first connection says why at
once, and no error or log line shows the password."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from ledger import AsyncLedger, Ledger
from ledger.adapters.view_store import PostgresViewStore
from ledger.errors import StoreError, StoreUnavailable
from tests.conftest import require_postgres

pytestmark = pytest.mark.postgres


def test_every_libpq_parameter_reaches_the_connection() -> None:
    url = require_postgres()
    with (
        Ledger.open(
            f"{url}?application_name=ledger-url-test&options=-c%20statement_timeout%3D4321"
        ) as books,
        books.store.datastore.pool.connection() as conn,
    ):
        row = conn.execute(
            "SELECT current_setting('application_name') AS a,"
            " current_setting('statement_timeout') AS t"
        ).fetchone()
    assert row == {"a": "ledger-url-test", "t": "4321ms"}


def test_connections_outside_the_pool_get_the_same_settings() -> None:
    url = require_postgres()
    # A connect_timeout in the URL is kept (it used to clash with the ledger's default
    # in the first connection and in the schema's, a TypeError).
    with Ledger.open(f"{url}?application_name=ledger-own-test&connect_timeout=7") as books:
        books.open_account("cash", "USD")  # the committer thread opens its connection
        conn = books._committer._connection._conn  # type: ignore[attr-defined]
        assert conn.info.parameter_status("application_name") == "ledger-own-test"
        assert conn.info.get_parameters()["connect_timeout"] == "7"
        views = PostgresViewStore(books.store.url, books.store.settings)  # type: ignore[attr-defined]
        try:
            assert views.conn.info.get_parameters()["connect_timeout"] == "7"
        finally:
            views.close()


def _plan_modes(books: Ledger) -> tuple[str, str, str]:
    """plan_cache_mode on a pooled connection, the committer's and the event loop's
    (the last closes the ledger)."""
    books.open_account("cash", "USD")  # the committer thread opens its connection
    committer = books._committer._connection  # type: ignore[attr-defined]
    (own,) = committer._conn.execute("SHOW plan_cache_mode").fetchone()
    committer.close()  # opened again for the next group, set up again
    books.open_account("cash-2", "USD")
    (again,) = committer._conn.execute("SHOW plan_cache_mode").fetchone()
    assert again == own
    with books.store.datastore.pool.connection() as pooled:  # type: ignore[attr-defined]
        row = pooled.execute("SHOW plan_cache_mode").fetchone()

    async def on_a_loop() -> str:
        abooks = AsyncLedger(books)
        await abooks.open_account(f"cash-{time.time_ns()}", "USD")  # committed on the loop
        driver = books._committer._drivers[asyncio.get_running_loop()]  # type: ignore[attr-defined]
        cur = await driver.appender._conn.execute("SHOW plan_cache_mode")
        (mode,) = await cur.fetchone()
        await abooks.close()
        return str(mode)

    return row["plan_cache_mode"], own, asyncio.run(on_a_loop())


def test_the_store_s_connections_keep_generic_plans_unless_a_mode_was_chosen() -> None:
    url = require_postgres()
    # The decision's read is planned once, not at every call (see prefer_generic_plans).
    with Ledger.open(url) as books:
        assert _plan_modes(books) == ("force_generic_plan",) * 3
    # A mode the URL names is the user's choice and stays, the default's name too.
    for mode in ("force_custom_plan", "auto"):
        with Ledger.open(f"{url}?options=-c%20plan_cache_mode%3D{mode}") as books:
            assert _plan_modes(books) == (mode,) * 3


def test_sslmode_require_against_a_server_without_tls_is_refused_at_once() -> None:
    url = require_postgres()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="server does not support SSL"):
        Ledger.open(f"{url}?sslmode=require")
    assert time.monotonic() - started < 3  # the server's answer, not a pool timeout


@pytest.mark.parametrize(
    ("suffix", "error", "text"),
    [
        ("?foo=bar", StoreError, 'invalid URI query parameter: "foo"'),
        ("?sslmode=sometimes", StoreUnavailable, "sslmode"),
    ],
)
def test_bad_parameters_are_refused_with_the_reason(
    suffix: str, error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text):
        Ledger.open(require_postgres() + suffix)


def test_refused_connections_say_why_and_hide_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = require_postgres()
    base = url.rsplit("/", 1)[0]
    host_port = base.split("@", 1)[1]
    cases = [
        (f"postgresql://postgres:sekret-pw@{host_port}/no_such_db_here", "does not exist"),
        ("postgresql://postgres:sekret-pw@127.0.0.1:1/x", "Connection refused"),
    ]
    with caplog.at_level(logging.DEBUG):
        for target, reason in cases:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match=reason) as info:
                Ledger.open(target)
            assert time.monotonic() - started < 3
            assert "sekret-pw" not in str(info.value) and ":***@" in str(info.value)
    assert "sekret-pw" not in caplog.text

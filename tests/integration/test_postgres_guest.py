"""The PostgreSQL store is a guest in the host's process: its errors, ``repr`` and
``store.url`` never show a password, and it leaves the host's settings alone."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import psycopg.conninfo
import pytest
from psycopg.types import composite

from ledger import Ledger
from ledger.errors import StoreError
from ledger.projections.audit import audit
from tests.conftest import require_postgres

SECRET = "S3CRET"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:S3CRET@127.0.0.1:1/db",
        "postgresql://u:S3CRET/x@127.0.0.1:1/db",
        "postgresql://u:S3CRET#x@127.0.0.1:1/db",
        "postgresql://u:S3CRET?x@127.0.0.1:1/db",
        "postgresql://u:S3CRET:more@127.0.0.1:1/db",
        "postgresql://u:S3%zzCRET@127.0.0.1:1/db",
        "postgresql://u:S3%43RET@127.0.0.1:1/db",
        "postgresql://u@127.0.0.1:1/db?password=S3CRET&sslmode=disable",
        "postgresql://u:S3CRET@[::1:1/db",
        "postgresql://u:S3CRET@127.0.0.1:1",
        "postgresql://u:S3CRET@127.0.0.1:1/db?connect_timeout=x",
        "host=127.0.0.1 port=1 dbname=db password=S3CRET",
        "host=127.0.0.1 port=1 dbname=db password='S3 CRET'",
        "mysql://u:S3CRET@h/db",
    ],
)
def test_a_refused_url_is_reported_without_its_password(url: str) -> None:
    with pytest.raises(StoreError) as info:
        Ledger.open(url)
    text = f"{info.value} {info.value!r}"
    assert "CRET" not in text and "%zz" not in text


def test_an_open_ledger_shows_its_url_without_the_password() -> None:
    url = require_postgres()
    host_db = url.split("@", 1)[1]
    with Ledger.open(f"postgresql://postgres:{SECRET}#x@{host_db}") as books:
        assert SECRET not in repr(books) and SECRET not in books.store.url  # type: ignore[attr-defined]
        assert ":***@" in books.store.url  # type: ignore[attr-defined]


def _pay(books: Ledger, key: str) -> Any:
    return books.transfer(key, debit="bank", credit="user", amount="1", asset="USD")


def _backends(books: Ledger) -> set[int]:
    """The server processes of the ledger's pooled connections and its committer's."""
    pids = set()
    for _ in range(3):
        with books.store.datastore.get_connection() as conn:  # type: ignore[attr-defined]
            pids.add(conn.info.backend_pid)
    pids.add(books._committer._connection._conn.info.backend_pid)  # type: ignore[attr-defined]
    return pids


def _alive(url: str, pids: set[int]) -> set[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", (list(pids),)
        ).fetchall()
    return {row[0] for row in rows}


@pytest.mark.postgres
@pytest.mark.parametrize("child_closes", [False, True])
def test_a_forked_child_writes_on_its_own_connections(pg_url: str, child_closes: bool) -> None:
    books = Ledger.open(pg_url)
    try:
        books.open_account("bank", "USD", normal="debit")
        books.open_account("user", "USD")
        books.transfer("t-0", debit="bank", credit="user", amount="1", asset="USD")
        parents = _backends(books)
        pid = os.fork()
        if pid == 0:  # the child: write, then go (closing the ledger or not)
            code = 1
            try:
                out = books.transfer(
                    "t-child", debit="bank", credit="user", amount="1", asset="USD"
                )
                code = 0 if out.status == "applied" and not _backends(books) & parents else 2
                if child_closes:
                    books.close()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert _alive(pg_url, parents) == parents  # the child ended none of the parent's
        for n in range(3):
            out = _pay(books, f"t-{n + 1}")
            assert out.status == "applied"
        assert _backends(books) == parents
        assert books.balance("user").available == Decimal("5")
        assert audit(books.store).clean
    finally:
        books.close()


def test_a_forked_child_writes_to_sqlite_on_its_own_connections(tmp_path: Path) -> None:
    books = Ledger.open(f"sqlite:///{tmp_path}/ledger.db")
    try:
        books.open_account("bank", "USD", normal="debit")
        books.open_account("user", "USD")
        books.transfer("t-0", debit="bank", credit="user", amount="1", asset="USD")
        datastore = books.store.datastore  # type: ignore[attr-defined]
        with datastore.get_connection(commit=True) as conn:
            parents = id(conn)  # the same object in the child: its copy of the parent's
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                out = _pay(books, "t-child")
                with datastore.get_connection(commit=True) as conn:
                    own = id(conn) != parents
                code = 0 if out.status == "applied" and own else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        out = books.transfer("t-1", debit="bank", credit="user", amount="1", asset="USD")
        assert out.status == "applied"
        assert books.balance("user").available == Decimal("3")
        assert audit(books.store).clean
    finally:
        books.close()


def _run(code: str, **env: str) -> str:
    """Run ``code`` in a new interpreter (with ``env`` added) and return its output."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_and_opening_leave_the_host_s_psycopg_loggers_alone() -> None:
    url = require_postgres()
    out = _run(
        f"""
        import logging, sys
        logging.getLogger("psycopg").setLevel(logging.DEBUG)
        logging.getLogger("psycopg.pool").setLevel(logging.INFO)
        from ledger import Ledger
        print("postgres store imported", "ledger.adapters.postgres_store" in sys.modules)
        Ledger.open("sqlite:///:memory:").close()
        print("after sqlite", "eventsourcing.postgres" in sys.modules)
        Ledger.open({url!r}).close()
        print(logging.getLogger("psycopg").level, logging.getLogger("psycopg.pool").level)
        """
    )
    assert out.splitlines() == [
        "postgres store imported False",
        "after sqlite False",
        f"{logging.DEBUG} {logging.INFO}",
    ]


def test_what_the_url_leaves_out_comes_from_libpq_s_environment() -> None:
    url = require_postgres()
    info = psycopg.conninfo.conninfo_to_dict(url)
    out = _run(
        f"""
        from ledger import Ledger
        with Ledger.open("postgresql:///{info["dbname"]}") as books:
            with books.store.datastore.get_connection() as conn:
                print(conn.info.host, conn.info.port, conn.info.password)
            print(books._committer.store.settings)
        """,
        PGHOST=str(info["host"]),
        PGPORT=str(info["port"]),
        PGUSER=str(info.get("user", "postgres")),
        PGPASSWORD="from-the-environment",
    )
    host, port, password = out.splitlines()[0].split()
    assert (host, port, password) == (info["host"], str(info["port"]), "from-the-environment")


def test_session_settings_of_the_url_stay_on_pooled_connections() -> None:
    url = require_postgres()
    options = "options=-c%20idle_in_transaction_session_timeout%3D12345"
    with Ledger.open(f"{url}?{options}") as books:
        with books.store.datastore.get_connection() as conn:  # type: ignore[attr-defined]
            row = conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()
            assert conn.autocommit
        assert row == {"idle_in_transaction_session_timeout": "12345ms"}


def test_opening_again_and_again_does_not_grow_psycopg_s_type_caches() -> None:
    url = require_postgres()
    for _ in range(3):
        Ledger.open(url).close()
    sizes = [f.cache_info().currsize for f in (composite._make_loader, composite._make_dumper)]
    for _ in range(5):
        Ledger.open(url).close()
    assert [
        f.cache_info().currsize for f in (composite._make_loader, composite._make_dumper)
    ] == sizes


@pytest.mark.parametrize("durability", ["requires", "off", "", None, True])
def test_a_durability_other_than_require_or_allow_is_refused(durability: Any) -> None:
    with pytest.raises(ValueError, match="'require' or 'allow'"):
        Ledger.open("sqlite:///:memory:", durability=durability)


def test_a_short_password_is_hidden_by_its_place_not_wherever_its_text_appears() -> None:
    """Hiding a one-character password everywhere would garble the port and the
    database's name and, by the pattern of what was hidden, tell the password."""
    from ledger.adapters.pg_conninfo import parse_conninfo

    shown = parse_conninfo("postgresql://postgres:5@127.0.0.1:55432/db5").shown
    assert shown == "postgresql://postgres:***@127.0.0.1:55432/db5"
    assert parse_conninfo("postgresql://u@h/db?password=ab").shown == (
        "postgresql://u@h/db?password=***"
    )

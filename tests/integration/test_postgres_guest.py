"""The PostgreSQL store is a guest in the host's process: its errors, ``repr`` and
``store.url`` never show a password, and it leaves the host's settings alone."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import pytest

from ledger import Ledger
from ledger.errors import StoreError
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

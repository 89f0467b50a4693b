"""A PostgreSQL database where acknowledged commits could be lost is refused."""

from __future__ import annotations

import psycopg
import pytest

from ledger import Ledger, StoreError
from tests.conftest import require_postgres

pytestmark = pytest.mark.postgres


def test_case_19_durability_guard_synchronous_commit_off_refused_unless_allowed() -> None:
    url = require_postgres()
    base, _, name = url.rpartition("/")
    unsafe = f"{name}_unsafe"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{unsafe}"')
        conn.execute(f'CREATE DATABASE "{unsafe}"')
        conn.execute(f'ALTER DATABASE "{unsafe}" SET synchronous_commit = off')
    with pytest.raises(StoreError, match="synchronous_commit=off"):
        Ledger.open(f"{base}/{unsafe}")
    with Ledger.open(f"{base}/{unsafe}", durability="allow") as books:
        books.open_account("a", "USD")

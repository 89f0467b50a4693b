"""The append's pre-built binary arrays reach PostgreSQL as the values they were made
from (against the server itself, for any values of each element type)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.adapters.pg_arrays import (
    ByteaArray,
    Int8Array,
    TextArray,
    TimestamptzArray,
    UuidArray,
    adapt,
)
from tests.conftest import require_postgres

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def conn() -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(require_postgres(), autocommit=True) as connection:
        adapt(connection)
        yield connection


def _echo(conn: psycopg.Connection[Any], array: Any) -> list[Any]:
    row = conn.execute("SELECT %b AS a, pg_typeof(%b)::text AS t", (array, array)).fetchone()
    assert row is not None
    assert row[1] == {2951: "uuid[]", 1016: "bigint[]", 1009: "text[]", 1001: "bytea[]"}.get(
        array.oid, "timestamp with time zone[]"
    )
    return list(row[0]) if row[0] is not None else []


_text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)))
_aware = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
).map(lambda d: d.astimezone(timezone(timedelta(hours=-7, minutes=-30))))


@settings(max_examples=60, deadline=None)
@given(
    uuids=st.lists(st.uuids(), max_size=20),
    ints=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=20),
    texts=st.lists(_text, max_size=20),
    blobs=st.lists(st.binary(max_size=300), max_size=20),
    times=st.lists(st.none() | _aware, max_size=20),
)
def test_arrays_round_trip(
    conn: psycopg.Connection[Any],
    uuids: list[uuid.UUID],
    ints: list[int],
    texts: list[str],
    blobs: list[bytes],
    times: list[datetime | None],
) -> None:
    assert _echo(conn, UuidArray.of(uuids)) == uuids
    assert _echo(conn, Int8Array.of(ints)) == ints
    assert _echo(conn, TextArray.of(texts)) == texts
    assert [bytes(b) for b in _echo(conn, ByteaArray.of(blobs))] == blobs
    assert _echo(conn, TimestamptzArray.of(times)) == times


def test_a_time_without_a_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="without a zone"):
        TimestamptzArray.of([datetime(2026, 1, 1)])


def test_the_hosts_own_connections_are_left_alone(conn: psycopg.Connection[Any]) -> None:
    with (
        psycopg.connect(require_postgres(), autocommit=True) as other,
        pytest.raises(psycopg.ProgrammingError, match="cannot adapt"),
    ):
        other.execute("SELECT %b", (UuidArray.of([uuid.uuid4()]),))

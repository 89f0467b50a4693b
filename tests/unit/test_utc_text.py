"""The read models' time text: fixed width, so that text order is time order, for
every year the write side accepts (1 to 9999 in UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from ledger.projections.balances import utc_text

instants = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)


def test_years_before_1000_are_padded() -> None:
    assert utc_text(datetime(999, 6, 1, tzinfo=UTC)) == "0999-06-01T00:00:00.000000+00:00"
    assert utc_text(datetime(1, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))).startswith(
        "0001-01-01T00:00:00"
    )


@given(instants, instants)
def test_text_order_is_time_order(a: datetime, b: datetime) -> None:
    ta, tb = utc_text(a), utc_text(b)
    assert len(ta) == len(tb) == 32
    assert (ta < tb) == (a < b)

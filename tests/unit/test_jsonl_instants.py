"""Times in the import format are exactly RFC 3339 date-times with a zone (or a date):
the other forms Python's ``fromisoformat`` takes are refused, and more than 6
fractional digits are refused rather than truncated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ledger.adapters.jsonl_lines import parse_line
from ledger.commands import PostEntry

LEGS = '"legs":[{"account":"a","amount":"1.00","currency":"USD"},{"account":"b","amount":"-1.00","currency":"USD"}]'  # noqa: E501


def at(value: str) -> datetime | None:
    command = parse_line('{"key":"k","effective_at":"' + value + '",' + LEGS + "}")
    assert isinstance(command, PostEntry)
    return command.effective_at


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-31", datetime(2026, 1, 31, tzinfo=UTC)),
        ("2026-01-31T10:00:00Z", datetime(2026, 1, 31, 10, tzinfo=UTC)),
        ("2026-01-31t10:00:00z", datetime(2026, 1, 31, 10, tzinfo=UTC)),
        ("2026-01-31 10:00:00Z", datetime(2026, 1, 31, 10, tzinfo=UTC)),
        (
            "2026-01-31T12:00:00+02:00",
            datetime(2026, 1, 31, 12, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2026-01-31T10:00:00.5Z", datetime(2026, 1, 31, 10, 0, 0, 500000, tzinfo=UTC)),
        ("2026-01-31T10:00:00.123456Z", datetime(2026, 1, 31, 10, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_rfc3339_date_times_and_dates_are_taken(value: str, expected: datetime) -> None:
    when = at(value)
    assert when == expected
    assert when is not None and when.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2026-W05-1", "not a date"),  # ISO week date (was taken as 2026-01-26)
        ("2026-031", "not a date"),  # ordinal date
        ("20260101T000000Z", "not a date"),  # basic format
        ("2026-01-01T00:00:00+0200", "not a date"),  # offset without its colon
        ("2026-01-01T10:00", "not a date"),  # no seconds
        ("2026-01-01T10:00:00", "time zone"),
        ("2026-01-01T10:00:00.123456789Z", "9 fractional digits"),  # was truncated
        ("2026-01-01T10:00:00.1234567Z", "7 fractional digits"),
        ("2026-02-30", "not a valid date"),
        ("2026-01-01T24:00:00Z", "not a valid date-time"),
        ("2026-01-01T10:00:00+24:00", "not a valid date-time"),
        ("0001-01-01T00:00:00+01:00", "out of range"),
    ],
)
def test_other_forms_are_refused_with_a_reason(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as caught:
        at(value)
    assert "effective_at" in str(caught.value)


def test_expires_at_follows_the_same_rule() -> None:
    with pytest.raises(ValueError, match="expires_at"):
        parse_line('{"key":"k","kind":"pending","expires_at":"2026-W05-1",' + LEGS + "}")


def test_an_export_with_offsets_carrying_seconds_imports_again() -> None:
    """Times keep the zone they were given, and a historical zone's offset has seconds
    (Amsterdam before 1937: +00:19:32): the export must read back, replaying."""
    from datetime import datetime, timedelta, timezone
    from zoneinfo import ZoneInfo

    from ledger import Ledger
    from ledger.adapters.jsonl import export_lines, import_lines

    with Ledger.open("sqlite:///:memory:") as books:
        books.open_account("bank", "USD", normal="debit")
        books.open_account("u", "USD")
        for key, when in (
            ("t1", datetime(1900, 1, 2, 12, tzinfo=ZoneInfo("Europe/Amsterdam"))),
            ("t2", datetime(2020, 1, 2, 12, tzinfo=timezone(timedelta(hours=5, seconds=15)))),
        ):
            books.transfer(
                key, debit="bank", credit="u", amount="1", asset="USD", effective_at=when
            )
        text = [line.decode() for line in export_lines(books)]
        assert any("+00:19:32" in line for line in text)
        report = import_lines(books, lambda: iter(text))
        assert (report.invalid, report.replayed, report.applied) == (0, 4, 0), report.errors

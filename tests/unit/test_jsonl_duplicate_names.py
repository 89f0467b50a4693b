"""A JSON object that names a field twice is refused: which value counts differs from
one JSON reader to another (this one kept the last), so a line read by another tool
could post another amount to another account."""

from __future__ import annotations

import pytest

from ledger.adapters.jsonl_lines import parse_line

LEG_B = '{"account":"b","amount":"-1.00","currency":"USD"}'


@pytest.mark.parametrize(
    ("line", "name"),
    [
        (
            '{"key":"k","legs":[{"account":"a","amount":"1.00","currency":"USD","amount":"5.00"},'
            + LEG_B
            + "]}",
            "amount",
        ),
        (
            '{"key":"k","key":"other","legs":[{"account":"a","amount":"1.00","currency":"USD"},'
            + LEG_B
            + "]}",
            "key",
        ),
        (
            '{"key":"k","legs":[{"account":"a","amount":"1.00","currency":"USD"},'
            + LEG_B
            + '],"metadata":{"ref":"1","ref":"2"}}',
            "ref",
        ),
        ('{"kind":"asset","code":"PTS","scale":3,"scale":18}', "scale"),
    ],
)
def test_a_field_named_twice_is_refused(line: str, name: str) -> None:
    with pytest.raises(ValueError, match=f"names {name!r} twice"):
        parse_line(line)


def test_the_same_name_in_different_objects_is_fine() -> None:
    line = (
        '{"key":"k","legs":[{"account":"a","amount":"1.00","currency":"USD"},'
        + LEG_B
        + '],"metadata":{"account":"x","n":{"account":"y"}}}'
    )
    assert parse_line(line).key == "k"
    assert parse_line(line.encode()).key == "k"

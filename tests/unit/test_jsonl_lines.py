"""The file format is one pydantic model: each kind of line validates to its command,
and a bad line is refused with the field and the reason."""

from __future__ import annotations

import pytest

from ledger.adapters.jsonl_lines import parse_line
from ledger.commands import (
    DeclareAsset,
    FreezeAccount,
    OpenAccount,
    PayRequest,
    PlaceHold,
    PostEntry,
    RequestPayment,
)

LEGS = '"legs":[{"account":"a","amount":"1.00","currency":"USD"},{"account":"b","amount":"-1.00","currency":"USD"}]'  # noqa: E501


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ('{"key":"k",' + LEGS + "}", PostEntry),
        (
            '{"key":"k","kind":"pending","expires_at":"2026-02-01T00:00:00Z",' + LEGS + "}",
            PlaceHold,
        ),
        ('{"key":"k","kind":"request",' + LEGS + "}", RequestPayment),
        ('{"key":"k","request":"r1"}', PayRequest),
        ('{"kind":"asset","code":"PTS","scale":3}', DeclareAsset),
        ('{"kind":"account","account":"Assets:Bank","asset":"USD","normal":"debit"}', OpenAccount),
        ('{"kind":"freeze_account","key":"f","account":"a","mode":"debits"}', FreezeAccount),
    ],
)
def test_each_kind_of_line_is_its_command(line: str, kind: type) -> None:
    assert type(parse_line(line)) is kind


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "Invalid JSON"),
        ("[1, 2]", "should be an object"),
        ('{"key":"k","legs":[{"account":"a","amount":1.5,"currency":"USD"}]}', "legs.0.amount"),
        ('{"key":"k","colour":"red",' + LEGS + "}", "colour: Extra inputs are not permitted"),
        ('{"key":"k","kind":"teleport",' + LEGS + "}", "kind"),
        ('{"key":"k","effective_at":"2026-01-31T10:00:00",' + LEGS + "}", "time zone"),
        ('{"key":"k","kind":"request","legs":[]}', "a request has two legs"),
        ('{"kind":"account","account":"bad id!","asset":"USD"}', "account"),
        ('{"kind":"freeze_account","key":"f","account":"a","mode":"sometimes"}', "mode"),
    ],
)
def test_a_bad_line_names_the_field_and_the_reason(line: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_line(line)

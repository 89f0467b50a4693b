"""A field that a line's kind does not use is refused, never dropped: a void or an
expiry moves no legs of its own, a decline none, only a reversal names the entry it
reverses, and so on. Before, such fields were read and silently ignored (a void's
amounts, a posting's ``expires_at``), so the file said something that did not happen.
An asset's scale is a JSON integer (``true`` declared scale 1)."""

from __future__ import annotations

import pytest

from ledger.adapters.jsonl_lines import parse_line

LEGS = '"legs":[{"account":"a","amount":"1.00","currency":"USD"},{"account":"b","amount":"-1.00","currency":"USD"}]'  # noqa: E501


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"key":"k","kind":"void","hold":"h",' + LEGS + "}", "legs: a void line"),
        ('{"key":"k","kind":"void","hold":"h","metadata":{"a":1}}', "metadata: a void line"),
        (
            '{"key":"k","kind":"expire","hold":"h","effective_at":"2026-01-01","description":"x"}',
            "description: an expire line",
        ),
        ('{"key":"k","kind":"decline","request":"r",' + LEGS + "}", "legs: a decline line"),
        ('{"key":"k","expires_at":"2026-01-01",' + LEGS + "}", "expires_at: a posted line"),
        ('{"key":"k","kind":"pending","hold":"h",' + LEGS + "}", "hold: a pending line"),
        ('{"key":"k","reverses":"r",' + LEGS + "}", "reverses: a posted line"),
        ('{"key":"k","kind":"capture","hold":"h","request":"r"}', "request: a capture line"),
        ('{"kind":"asset","code":"PTS","scale":true}', "scale"),
        ('{"kind":"asset","code":"PTS","scale":"3"}', "scale"),
    ],
)
def test_a_field_the_kind_does_not_use_is_refused(line: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_line(line)


@pytest.mark.parametrize(
    "line",
    [  # as ledger export writes them: empty legs and metadata where a kind has none
        '{"key":"v","kind":"void","effective_at":"2026-03-01T09:00:00+00:00",'
        '"description":"","legs":[],"hold":"h","metadata":{}}',
        '{"key":"e","kind":"expire","effective_at":"2026-03-01T12:00:00+00:00",'
        '"description":"","legs":[],"hold":"h","metadata":{}}',
        '{"key":"d","kind":"decline","description":"no","legs":[],"request":"r","metadata":{}}',
        '{"key":"p","request":"r","metadata":{"flow":"request"},' + LEGS + "}",
        '{"key":"c","kind":"capture","hold":"h",' + LEGS + "}",
        '{"kind":"asset","code":"PTS","scale":3}',
    ],
)
def test_what_export_writes_for_each_kind_is_taken(line: str) -> None:
    parse_line(line)

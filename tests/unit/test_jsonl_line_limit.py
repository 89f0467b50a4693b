"""``lines_of(stream, line_bytes_max)`` keeps to the limit it is given: a longer line
is refused as too long, not cut to the limit and parsed. Before, only the module's
own limit (1 MiB) was checked, so a line cut by a smaller limit was read as whatever
its first bytes said (here: a complete entry followed by spaces)."""

from __future__ import annotations

import io
from pathlib import Path

from ledger import Ledger
from ledger.adapters.jsonl import import_lines, lines_of
from ledger.model import entry_id_for_key

LINE = (
    b'{"key":"k1","legs":[{"account":"a","amount":"1.00","currency":"USD"},'
    b'{"account":"b","amount":"-1.00","currency":"USD"}]}'
)


def test_a_line_beyond_the_given_limit_is_refused_and_nothing_applies(tmp_path: Path) -> None:
    data = LINE + b" " * 200 + b"\n"  # a complete entry, then padding past the limit
    limit = len(LINE) + 10
    with Ledger.open(f"sqlite:///{tmp_path / 'books.db'}") as books:
        report = import_lines(books, lambda: lines_of(io.BytesIO(data), limit))
        assert report.invalid == 1 and report.applied == 0
        assert report.errors is not None
        assert report.errors[0].line == 1
        assert f"longer than {limit} bytes" in report.errors[0].message
        assert books.entry(entry_id_for_key("k1")) is None


def test_a_line_within_the_given_limit_is_read() -> None:
    data = LINE + b"\n" + LINE.replace(b"k1", b"k2") + b"\n"
    assert list(lines_of(io.BytesIO(data), len(LINE) + 1)) == data.splitlines(keepends=True)

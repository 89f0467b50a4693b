"""Importing a line whose key names an entry already in the store: the line counts as
replayed only when it is the export of that entry; an entry that cannot be read or
written back as a line (sealed without the key, edited outside the ledger) makes the
line a conflict, never an error that stops the import halfway."""

from __future__ import annotations

import orjson

from ledger import Ledger
from ledger.adapters.crypto import Keyring, new_key
from ledger.adapters.jsonl import export_lines, import_lines
from tests.integration.test_cli import Raw


def _seed(books: Ledger) -> list[bytes]:
    books.open_account("bank", "USD", normal="debit")
    books.open_account("alice", "USD")
    books.transfer("t1", debit="bank", credit="alice", amount="5", asset="USD", description="d")
    return list(export_lines(books))


def _changed(lines: list[bytes]) -> bytes:
    line = next(line for line in lines if b'"key":"t1"' in line)
    return line.replace(b'"description":"d"', b'"description":"other"')


def test_a_changed_line_of_a_sealed_entry_without_its_key_is_a_conflict(store_url: str) -> None:
    with Ledger.open(store_url, keyring=Keyring({"k1": new_key()}, current="k1")) as books:
        lines = _seed(books)
    later = b'{"key":"t2","legs":[{"account":"bank","amount":"1","currency":"USD"},' + (
        b'{"account":"alice","amount":"-1","currency":"USD"}]}'
    )
    with Ledger.open(store_url) as books:  # no keyring: the entry cannot be opened
        report = import_lines(books, lambda: iter([_changed(lines), later]))
        assert (report.conflicts, report.applied) == (1, 1), report
        assert report.errors is not None and "t1" in report.errors[0].message


def test_a_changed_line_of_an_entry_edited_outside_the_ledger_is_a_conflict(
    store_url: str,
) -> None:
    with Ledger.open(store_url) as books:
        lines = _seed(books)
    raw = Raw(store_url)
    position, state = raw.entry(0)
    body = orjson.loads(state)
    del body["legs"]
    raw.execute(
        f"UPDATE stored_events SET state = ? WHERE {raw.pos} = ?", orjson.dumps(body), position
    )
    with Ledger.open(store_url) as books:
        report = import_lines(books, lambda: iter([_changed(lines)]))
        assert report.conflicts == 1, report

"""Assets on every store: an ISO 4217 code is never declared, whatever the ledger has
already seen of it."""

from __future__ import annotations

import pytest

from ledger import Ledger
from ledger.errors import InvalidCommand
from ledger.model import entry_id_for_key


def test_declaring_an_iso_currency_in_use_is_invalid_at_once(books: Ledger) -> None:
    # Using USD first puts it among the assets the ledger knows; declaring it then
    # was decided as "already declared" against an asset stream that does not exist,
    # so every attempt conflicted: ConcurrencyConflict after 30 attempts, most of them
    # holding the store's write lock.
    books.open_account("bank", "USD", normal="debit")
    with pytest.raises(InvalidCommand, match="ISO 4217 currency"):
        books.declare_asset("USD", 2, key="declare-usd")
    with pytest.raises(InvalidCommand, match="ISO 4217 currency"):
        books.declare_asset("USD", 2)
    # A malformed request burns no key and writes nothing.
    assert books.store.lookup_keys([entry_id_for_key("declare-usd")]) == {}
    assert books.open_account("w", "USD", key="declare-usd").ok

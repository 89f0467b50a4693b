"""Assets on every store: an ISO 4217 code is never declared, whatever the ledger has
already seen of it."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from ledger import AsyncLedger, Ledger
from ledger.errors import AccountExists, AssetExists, IdempotencyConflict, InvalidCommand
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


def test_opening_an_account_again_with_other_settings_says_it_exists(books: Ledger) -> None:
    books.open_account("w", "USD", min_balance="0")
    assert books.open_account("w", "USD", min_balance="0").replayed
    with pytest.raises(AccountExists, match="already open"):
        books.open_account("w", "EUR")
    with pytest.raises(AccountExists):
        books.open_account("w", "USD", min_balance="-5")
    # a key chosen by the caller keeps its own meaning
    with pytest.raises(AccountExists):
        books.open_account("w", "USD", key="mine")
    assert books.balance("w").min_balance == Decimal("0")


def test_async_declare_and_open_again_with_other_settings(books: Ledger) -> None:
    async def main() -> None:
        aio = await AsyncLedger.open(books.store.url)
        await aio.declare_asset("PTS", 2)
        assert (await aio.declare_asset("PTS", 2)).replayed
        with pytest.raises(AssetExists, match="scale 2, not 3"):
            await aio.declare_asset("PTS", 3)
        await aio.open_account("v", "PTS")
        with pytest.raises(AccountExists):
            await aio.open_account("v", "PTS", normal="debit")
        await aio.close()

    asyncio.run(main())


def test_a_default_key_another_request_took_is_a_conflict_not_a_missing_asset(
    books: Ledger,
) -> None:
    """``asset:PTS`` and ``account:w`` used as keys of postings: declaring PTS or
    opening w under the default keys is the key's conflict (nothing of that name
    exists to blame), not UnknownAsset or AccountExists."""
    books.open_account("bank", "USD", normal="debit")
    books.open_account("x", "USD")
    books.post("asset:PTS", [("bank", "1", "USD"), ("x", "-1", "USD")])
    books.post("account:w", [("bank", "1", "USD"), ("x", "-1", "USD")])
    with pytest.raises(IdempotencyConflict):
        books.declare_asset("PTS", 2)
    with pytest.raises(IdempotencyConflict):
        books.open_account("w", "USD")

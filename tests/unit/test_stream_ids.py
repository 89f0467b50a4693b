"""Stream ids are RFC 4122 version-5 UUIDs: the fast derivation equals ``uuid.uuid5``."""

from __future__ import annotations

import pickle
import uuid

from hypothesis import given
from hypothesis import strategies as st

from ledger.model import (
    _NS_ACCOUNT,
    _NS_ASSET,
    _NS_ENTRY,
    account_stream_id,
    asset_stream_id,
    entry_id_for_key,
    uuid_from_int,
)

_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=300)


@given(_TEXT)
def test_entry_ids_equal_uuid5(key: str) -> None:
    derived = entry_id_for_key(key)
    assert derived == uuid.uuid5(_NS_ENTRY, key)
    assert derived.version == 5
    assert derived.variant == uuid.RFC_4122


@given(_TEXT)
def test_account_and_asset_ids_equal_uuid5(name: str) -> None:
    assert account_stream_id(name) == uuid.uuid5(_NS_ACCOUNT, name)
    assert asset_stream_id(name) == uuid.uuid5(_NS_ASSET, name)


def test_a_known_id_never_changes() -> None:
    # Stored events are found by these ids: a change would orphan every stream.
    assert str(entry_id_for_key("k-1")) == "3742d2eb-5b9a-58ac-87de-a0d9351f893c"
    assert str(account_stream_id("bank")) == "e386af03-a368-540a-8d2a-64c875220e4b"


@given(st.integers(min_value=0, max_value=(1 << 128) - 1))
def test_uuid_from_int_is_the_uuid_the_constructor_makes(value: int) -> None:
    made, built = uuid_from_int(value), uuid.UUID(int=value)
    assert made == built and hash(made) == hash(built)
    assert (made.hex, str(made), made.bytes, made.is_safe) == (
        built.hex,
        str(built),
        built.bytes,
        built.is_safe,
    )
    assert pickle.loads(pickle.dumps(made)) == built
    assert {made: 1}[built] == 1

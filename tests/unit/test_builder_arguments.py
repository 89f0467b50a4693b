"""Arguments the command builders (``ledger.commands.builders``, behind
``Ledger.open_account``, ``declare_asset`` and ``transfer``, sync and async alike)
once accepted and then misread: each is now a typed refusal naming the argument."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.commands import builders
from ledger.errors import InvalidCommand


@pytest.mark.parametrize("metadata", [["ab"], [("tier", "gold")], "a=1", 5])
def test_account_metadata_that_is_not_a_mapping_is_refused(metadata: Any) -> None:
    """``dict(metadata)`` read a list of two-character strings or pairs as a mapping
    (``["ab"]`` became ``{"a": "b"}``) and failed on a string or a number with a bare
    ValueError or TypeError."""
    with pytest.raises(InvalidCommand, match="metadata"):
        builders.open_account("users:1:wallet", "USD", metadata=metadata)


@pytest.mark.parametrize("metadata", [None, {}, {"tier": "gold"}])
def test_account_metadata_as_a_mapping_or_none_is_kept(metadata: Any) -> None:
    command = builders.open_account("users:1:wallet", "USD", metadata=metadata)
    assert command.metadata == (metadata or {})


@pytest.mark.parametrize("key", ["", 0, False])
def test_an_empty_or_falsy_key_is_refused_not_replaced_by_the_default(key: Any) -> None:
    """``key or default`` gave ``key=""`` (or 0, False) the default key: the caller's
    key was silently replaced. Only ``None`` means the default."""
    with pytest.raises(InvalidCommand, match="key"):
        builders.open_account("users:1:wallet", "USD", key=key)
    with pytest.raises(InvalidCommand, match="key"):
        builders.declare_asset("POINTS", 2, key=key)
    assert builders.open_account("users:1:wallet", "USD").key == "account:users:1:wallet"
    assert builders.declare_asset("POINTS", 2).key == "asset:POINTS"


def test_a_transfer_given_legs_is_refused() -> None:
    """A transfer makes its own two legs: ``legs=`` escaped as a bare TypeError."""
    with pytest.raises(InvalidCommand, match="legs"):
        builders.transfer(
            "t-1", debit="a", credit="b", amount="1", asset="USD", legs=[("a", "2", "USD")]
        )

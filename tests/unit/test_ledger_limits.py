"""The write side's ``Ledger`` checks its own group and queue limits, as ``Ledger.open``
does: a limit that is not a whole number of at least 1 is ``ValueError`` naming it.
Before, ``Ledger(store, group_commands_max="5")`` failed with a bare ``TypeError``
from a comparison, and ``True`` or ``2.5`` were taken."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.adapters.urls import open_store
from ledger.commands.service import Ledger


@pytest.mark.parametrize("name", ["group_commands_max", "queue_commands_max"])
@pytest.mark.parametrize("value", ["5", 2.5, True, 0, -1])
def test_a_limit_that_is_not_a_whole_number_from_1_is_refused(
    tmp_path: Path, name: str, value: object
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'books.db'}")
    try:
        with pytest.raises(ValueError, match=f"{name} must be a whole number of at least 1"):
            Ledger(store, **{name: value})  # type: ignore[arg-type]
    finally:
        store.close()


def test_whole_limits_are_taken(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'books.db'}")
    books = Ledger(store, group_commands_max=5, queue_commands_max=7)
    try:
        assert books._committer.group_commands_max == 5
        assert books._committer.queue_commands_max == 7
    finally:
        books.close()

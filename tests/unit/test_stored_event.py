"""Events made by ``stored_event`` and log entries made by ``notification`` are the
constructors', in every way the stores and readers use."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import uuid

import pytest
from eventsourcing.persistence import Notification, StoredEvent
from hypothesis import given
from hypothesis import strategies as st

from ledger import store
from ledger.store import notification, stored_event

fields = st.tuples(
    st.uuids(),
    st.integers(min_value=1, max_value=2**63 - 1),
    st.text(max_size=40),
    st.binary(max_size=200),
)


def test_the_fast_way_is_in_use() -> None:
    # If eventsourcing changes the class, the fallback keeps this correct but slow.
    assert stored_event is store._stored_event
    assert notification is store._notification


@given(st.integers(min_value=1, max_value=2**63 - 1), fields)
def test_log_entries_equal_the_constructors(
    position: int, values: tuple[uuid.UUID, int, str, bytes]
) -> None:
    made = notification(position, *values)
    plain = Notification(*values, id=position)
    fallback = store._notification_by_init(position, *values)
    assert type(made) is Notification and made == plain == fallback
    assert hash(made) == hash(plain)
    assert repr(made) == repr(plain)
    assert dataclasses.astuple(made) == (*values, position)
    assert pickle.loads(pickle.dumps(made)) == plain
    assert copy.copy(made) == plain
    assert (made.id, made.originator_id, made.originator_version, made.topic, made.state) == (
        position,
        *values,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.id = 0  # type: ignore[misc]


@given(fields)
def test_equal_to_the_constructors_event(values: tuple[uuid.UUID, int, str, bytes]) -> None:
    made = stored_event(*values)
    plain = StoredEvent(*values)
    assert type(made) is StoredEvent
    assert made == plain and plain == made
    assert hash(made) == hash(plain)
    assert repr(made) == repr(plain)
    assert dataclasses.astuple(made) == values
    assert pickle.loads(pickle.dumps(made)) == plain
    assert copy.copy(made) == plain
    assert dataclasses.replace(made, state=b"x") == dataclasses.replace(plain, state=b"x")
    assert (made.originator_id, made.originator_version, made.topic, made.state) == values


def test_stays_frozen() -> None:
    made = stored_event(uuid.uuid4(), 1, "topic", b"{}")
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.state = b"changed"  # type: ignore[misc]


def test_differs_where_the_constructors_would() -> None:
    sid = uuid.uuid4()
    assert stored_event(sid, 1, "t", b"a") != stored_event(sid, 2, "t", b"a")
    assert stored_event(sid, 1, "t", b"a") != StoredEvent(sid, 1, "t", b"b")

"""Messages that are not ledger events, or that arrive twice, reaching the Kafka
projector through a real broker: each malformed one is a logged, counted
``MessageError`` that is skipped (never a traceback that stops the worker on the same
message forever, never its content in the log); the relayed events around them are
applied exactly once, and the read model equals the replay."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from ledger import Ledger
from ledger.adapters.kafka_consumer import KafkaProjector
from ledger.adapters.kafka_messages import SCHEMA, MessageError, decode_message
from ledger.adapters.kafka_relay import KafkaRelay
from ledger.adapters.urls import open_store
from ledger.adapters.view_store import open_view_store
from ledger.errors import StoreError
from ledger.projections import BalancesView
from tests.conftest import require_postgres
from tests.integration.kafka_support import (
    FAST_GROUP,
    balances_projector,
    fresh_pg,
    new_topic,
    replay_balances,
    require_kafka,
    view_rows,
)
from tests.integration.test_projector_faults import fresh, transfers

SECRET = "alice@example.com"  # personal data a hostile message carries: never logged
SID = "00000000-0000-0000-0000-0000000000aa"


def _message(**fields: object) -> bytes:
    good: dict[str, object] = {
        "schema": SCHEMA,
        "position": 1,
        "stream_id": SID,
        "version": 1,
        "type": "ledger:Entry:1",
        "event": {},
    }
    return orjson.dumps({k: v for k, v in {**good, **fields}.items() if v is not ...})


HOSTILE: list[bytes | None] = [
    b"not json " + SECRET.encode(),
    b"",
    None,  # a tombstone
    b"[1, 2]",
    b'"text"',
    b"\xff\xfe not utf-8",
    _message(schema="ledger-event/2"),
    _message(position=...),
    _message(position=SECRET),
    _message(position="7"),
    _message(position=7.5),
    _message(position=True),
    _message(position=-1),
    _message(position=0),
    _message(position=2**63),
    _message(stream_id=...),
    _message(stream_id=SECRET),
    _message(stream_id=12),
    _message(version=...),
    _message(version=[1]),
    _message(version=0),
    _message(type=...),
    _message(type=5),
    _message(type=""),
    _message(event=...),
    _message(event=[SECRET]),
    _message(event=SECRET),
    _message(event={"sealed": 5}),
    b"{" + b'"x": "' + b"y" * 600_000 + b'"',  # huge and cut short
]


def test_every_malformed_message_is_a_message_error() -> None:
    for value in HOSTILE:
        with pytest.raises(MessageError) as raised:
            decode_message(value)  # type: ignore[arg-type]  # a tombstone's None too
        assert SECRET not in str(raised.value)


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.postgres
def test_hostile_and_duplicate_messages_skipped_events_applied_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bootstrap = require_kafka()
    url = require_postgres()
    fresh(url)
    views_url = fresh_pg(url, "kafka_hostile_views")
    topic = new_topic(bootstrap)
    producer = KafkaProducer(bootstrap_servers=bootstrap, max_request_size=4 * 1024 * 1024)

    def hostile() -> None:
        for value in HOSTILE:
            producer.send(topic, value=value, key=SID.encode())
        producer.flush(timeout=30)

    with Ledger.open(url, create_schema=False) as books:
        hostile()  # before the first event: a new group starts on them
        books.submit_all(transfers(21, 300, "h"), chunk_size=100)
        relay = KafkaRelay(books.store, bootstrap=bootstrap, topic=topic, name=topic)
        relay.catch_up()
        hostile()
        # the whole log again, as a relay that lost its checkpoint would publish it
        again = KafkaRelay(books.store, bootstrap=bootstrap, topic=topic, name=f"{topic}-2")
        duplicated = again.catch_up()
        books.submit_all(transfers(22, 200, "i"), chunk_size=100)
        relay.catch_up()
        hostile()
        head = books.store.max_position()
        relay.close()
        again.close()
        producer.close()

        projector = KafkaProjector(
            open_view_store(open_store(views_url)),
            [BalancesView()],
            bootstrap=bootstrap,
            topic=topic,
            group=topic,
            consumer_config=FAST_GROUP,
        )
        deadline = time.monotonic() + 120
        with caplog.at_level(logging.DEBUG, logger="ledger"):
            while projector.checkpoints().get(0, 0) < head or projector.rejected < 3 * len(HOSTILE):
                assert time.monotonic() < deadline, (projector.checkpoints(), head)
                projector.poll_once()
        try:
            assert projector.rejected == 3 * len(HOSTILE)
            assert projector.applied == len(books.store.read_log(0, head + 1))
            assert projector.duplicates == duplicated
            with projector.views.snapshot() as w:
                consumed = view_rows(w)
        finally:
            projector.close()
        assert consumed == replay_balances(books)
    bad = [r for r in caplog.records if r.getMessage().startswith("ledger.kafka_bad_message")]
    assert len(bad) == 3 * len(HOSTILE)
    assert all(SECRET not in r.getMessage() for r in caplog.records)


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.postgres
def test_messages_of_another_topic_are_not_applied(tmp_path: Path) -> None:
    """A consumer given to the projector that is subscribed to more than its topic
    (here a second ledger's, whose positions overlap): those messages are rejected,
    not applied under the projector's checkpoints."""
    bootstrap = require_kafka()
    url = require_postgres()
    fresh(url)
    views_url = fresh_pg(url, "kafka_foreign_views")
    ours, theirs = new_topic(bootstrap), new_topic(bootstrap)
    other_url = f"sqlite:///{tmp_path}/other.db"
    with Ledger.open(other_url) as other:
        other.open_account("bank", "USD", normal="debit")
        for u in range(30):
            other.open_account(f"u{u}", "USD", owner=f"user{u}")
        other.submit_all(transfers(23, 400, "x"), chunk_size=200)
        relay = KafkaRelay(other.store, bootstrap=bootstrap, topic=theirs, name=theirs)
        foreign = relay.catch_up()
        relay.close()
    with Ledger.open(url, create_schema=False) as books:
        books.submit_all(transfers(24, 300, "y"), chunk_size=100)
        relay = KafkaRelay(books.store, bootstrap=bootstrap, topic=ours, name=ours)
        relay.catch_up()
        relay.close()
        head = books.store.max_position()
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=ours,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **FAST_GROUP,
        )
        consumer.subscribe([ours, theirs])
        projector = KafkaProjector(
            open_view_store(open_store(views_url)),
            [BalancesView()],
            bootstrap=bootstrap,
            topic=ours,
            group=ours,
            consumer=consumer,
        )
        deadline = time.monotonic() + 120
        try:
            while projector.checkpoints().get(0, 0) < head or projector.rejected < foreign:
                assert time.monotonic() < deadline, (projector.checkpoints(), head)
                projector.poll_once()
            assert projector.rejected == foreign
            with projector.views.snapshot() as w:
                consumed = view_rows(w)
        finally:
            projector.close()
        assert consumed == replay_balances(books)


@pytest.mark.postgres
def test_a_well_formed_message_with_an_unappliable_event_is_a_typed_error() -> None:
    """A message that passes the format check but whose event is not what its type
    promises (an Entry without its legs): ``StoreError`` naming the position, and the
    views and checkpoints stay as they were (not a bare KeyError, nothing half-applied)."""
    bootstrap = require_kafka()
    url = require_postgres()
    views_url = fresh_pg(url, "kafka_unappliable_views")
    topic = new_topic(bootstrap)
    projector = KafkaProjector(
        open_view_store(open_store(views_url)),
        [BalancesView()],
        bootstrap=bootstrap,
        topic=topic,
        group=topic,
    )
    try:
        bad = decode_message(_message(position=5, event={"kind": "posted", "key": "k"}))
        with pytest.raises(StoreError, match="position 5"):
            projector.apply_batch({0: [bad]})
        assert projector.checkpoints().get(0, 0) == 0
        with projector.views.snapshot() as w:
            assert view_rows(w) == ([], [])
    finally:
        projector.close()


def _poll_until(projector: KafkaProjector, done: object, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, (projector.checkpoints(), projector.duplicates)
        projector.poll_once()


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.postgres
def test_offsets_missing_from_the_topic_do_not_stall_the_projector() -> None:
    """Kafka offsets may have holes: a transaction's commit marker takes an offset no
    consumer receives, and a broker that lost unacknowledged records in an outage
    numbers the relay's retries after them. A projector whose next fetch started
    beyond the offset it saved went back to that offset, was given the same fetch,
    and went back again, forever (seen once in the outage test). Now, having gone
    back, it takes the hole as one (the group's committed offset is not beyond it)."""
    bootstrap = require_kafka()
    url = require_postgres()
    fresh(url)
    views_url = fresh_pg(url, "kafka_gap_views")
    topic = new_topic(bootstrap)
    with Ledger.open(url, create_schema=False) as books:
        books.submit_all(transfers(31, 200, "g"), chunk_size=100)
        relay = KafkaRelay(books.store, bootstrap=bootstrap, topic=topic, name=topic)
        relay.catch_up()
        projector = balances_projector(views_url, bootstrap, topic)
        try:
            head = books.store.max_position()
            _poll_until(projector, lambda: projector.checkpoints().get(0, 0) == head)
            # A transaction on the topic: one relayed message again (a duplicate),
            # then its commit marker, an offset that no consumer ever receives.
            reader = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
            reader.assign([TopicPartition(topic, 0)])
            reader.seek(TopicPartition(topic, 0), 0)
            first = next(iter(reader))
            reader.close()
            txn = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-txn")
            txn.init_transactions()
            txn.begin_transaction()
            txn.send(topic, value=first.value, key=first.key)
            txn.commit_transaction()
            txn.close()
            _poll_until(projector, lambda: projector.duplicates == 1)
            books.submit_all(transfers(32, 200, "h"), chunk_size=100)
            relay.catch_up()
            head = books.store.max_position()
            _poll_until(projector, lambda: projector.checkpoints().get(0, 0) == head)
            with projector.views.snapshot() as w:
                consumed = view_rows(w)
        finally:
            projector.close()
            relay.close()
        assert consumed == replay_balances(books)

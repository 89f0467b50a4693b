"""Workers of one consumer group started together on an empty PostgreSQL read-model
database (how a deployment starts them), and relays to several topics started together
on a new ledger, all come up: creating the checkpoint table and the views is
serialised, not a race that fails all but one with a duplicate catalogue entry."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

import psycopg
import pytest
from kafka import KafkaConsumer

from ledger import Ledger
from ledger.adapters.kafka_consumer import KafkaProjector
from ledger.adapters.kafka_relay import KafkaRelay
from ledger.adapters.urls import open_store
from ledger.adapters.view_store import open_view_store
from ledger.projections import BalancesView
from tests.conftest import require_postgres
from tests.integration.kafka_support import FAST_GROUP, fresh_pg, new_topic, require_kafka
from tests.integration.test_projector_faults import fresh

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.postgres]

WORKERS = 6
T = TypeVar("T")


def start_together(make: Callable[[int], T]) -> tuple[list[T], list[BaseException]]:
    """``make(i)`` for each of WORKERS threads released at once: what was made, and
    the errors raised."""
    together = threading.Barrier(WORKERS)
    errors: list[BaseException] = []
    started: list[T] = []

    def start(i: int) -> None:
        together.wait()
        try:
            started.append(make(i))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return started, errors


@pytest.mark.parametrize("attempt", range(3))
def test_workers_started_together_on_an_empty_database_all_start(attempt: int) -> None:
    bootstrap = require_kafka()
    views_url = fresh_pg(require_postgres(), f"kafka_startup_{attempt}")
    topic = new_topic(bootstrap)
    consumers = [
        KafkaConsumer(bootstrap_servers=bootstrap, group_id=topic, **FAST_GROUP)
        for _ in range(WORKERS)
    ]
    views = [open_view_store(open_store(views_url)) for _ in range(WORKERS)]
    started, errors = start_together(
        lambda i: KafkaProjector(
            views[i],
            [BalancesView()],
            bootstrap=bootstrap,
            topic=topic,
            group=topic,
            consumer=consumers[i],
        )
    )
    try:
        assert not errors, [f"{type(e).__name__}: {e}" for e in errors]
        assert len(started) == WORKERS
    finally:
        for consumer in consumers:
            consumer.close()
        for v in views:
            v.close()


@pytest.mark.parametrize("attempt", range(3))
def test_relays_started_together_on_a_new_ledger_all_start(attempt: int) -> None:
    url = require_postgres()
    fresh(url)
    with psycopg.connect(url, autocommit=True) as conn:  # a ledger never relayed before
        conn.execute("DROP TABLE IF EXISTS ledger_relay_checkpoints")
    books = [Ledger.open(url, create_schema=False) for _ in range(WORKERS)]
    # one relay per topic, each with its checkpoint in the ledger's database
    started, errors = start_together(
        lambda i: KafkaRelay(books[i].store, bootstrap="127.0.0.1:1", topic=f"t{i}", name=f"t{i}")
    )
    try:
        assert not errors, [f"{type(e).__name__}: {e}" for e in errors]
        assert len(started) == WORKERS
    finally:
        for relay in started:
            relay.close()
        for b in books:
            b.close()

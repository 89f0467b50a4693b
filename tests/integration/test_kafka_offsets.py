"""The read-model database, not the group's Kafka offsets, says where a Kafka projector
resumes: a worker whose views are behind its group's committed offsets (a new or
recreated read-model database, or one restored from a backup) reads again what its
views lack, so they still equal the replay of the log."""

from __future__ import annotations

import time

import psycopg
import pytest

from ledger import Ledger
from ledger.adapters.kafka_consumer import KafkaProjector
from ledger.adapters.kafka_relay import KafkaRelay
from ledger.adapters.urls import open_store
from ledger.adapters.view_store import open_view_store
from ledger.projections import BalancesView
from tests.conftest import require_postgres
from tests.integration.kafka_support import (
    FAST_GROUP,
    fresh_pg,
    new_topic,
    replay_balances,
    require_kafka,
    view_rows,
)
from tests.integration.test_projector_faults import fresh, transfers

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.postgres]


def projector(views_url: str, bootstrap: str, topic: str, group: str) -> KafkaProjector:
    return KafkaProjector(
        open_view_store(open_store(views_url)),
        [BalancesView()],
        bootstrap=bootstrap,
        topic=topic,
        group=group,
        consumer_config={**FAST_GROUP, "max_poll_records": 100},
    )


def consume(worker: KafkaProjector, until: int, timeout_s: float = 60) -> None:
    """Poll until the worker's checkpoint reaches ``until``, or fail."""
    deadline = time.monotonic() + timeout_s
    while worker.checkpoints().get(0, 0) < until:
        assert time.monotonic() < deadline, (worker.checkpoints(), until)
        worker.poll_once()


def copy_database(url: str, source_url: str) -> str:
    """A copy of the database at ``source_url`` (a backup restored), by template."""
    base, _, source = source_url.rpartition("/")
    target = f"{source}_restored"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{target}" TEMPLATE "{source}"')
    return f"{base}/{target}"


@pytest.mark.parametrize("views_behind", ["new database", "restored backup"])
def test_views_behind_the_groups_offsets_are_caught_up(views_behind: str) -> None:
    bootstrap = require_kafka()
    url = require_postgres()
    fresh(url)
    topic = new_topic(bootstrap)
    group = f"g-{topic}"
    with Ledger.open(url, create_schema=False) as books:
        books.submit_all(transfers(41, 600, "o"), chunk_size=200)
        relay = KafkaRelay(books.store, bootstrap=bootstrap, topic=topic, name=topic)
        relay.catch_up()
        relay.close()
        head = books.store.max_position()

        first_url = fresh_pg(url, "kafka_offsets_first")
        first = projector(first_url, bootstrap, topic, group)
        if views_behind == "restored backup":
            consume(first, head // 2)
            first.close()
            behind_url = copy_database(url, first_url)  # the backup, taken half-way
            first = projector(first_url, bootstrap, topic, group)
        else:
            behind_url = fresh_pg(url, "kafka_offsets_new")
        consume(first, head)  # the group's offsets are committed to the end
        first.close()

        # the same group on views that are behind its offsets
        behind = projector(behind_url, bootstrap, topic, group)
        try:
            consume(behind, head)
            with behind.views.snapshot() as w:
                consumed = view_rows(w)
        finally:
            behind.close()
        assert consumed == replay_balances(books)

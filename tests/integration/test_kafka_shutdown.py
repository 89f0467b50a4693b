"""Stopping the Kafka relay: ``run`` returns after the batch in flight once its stop
event is set, even with a backlog to publish (after an outage, or a first start on a
long log), so SIGTERM to ``ledger stream`` ends it within one batch instead of after
the whole backlog; its checkpoint stays at what the broker acknowledged."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from ledger import Ledger
from ledger.adapters.kafka_relay import KafkaRelay
from tests.integration.kafka_support import new_topic, read_topic, require_kafka
from tests.integration.test_projector_faults import transfers

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_relay_run_stops_within_one_batch_of_a_backlog(tmp_path: Path) -> None:
    bootstrap = require_kafka()
    topic = new_topic(bootstrap)
    with Ledger.open(f"sqlite:///{tmp_path}/ledger.db") as books:
        books.open_account("bank", "USD", normal="debit")
        for u in range(30):
            books.open_account(f"u{u}", "USD", owner=f"user{u}")
        books.submit_all(transfers(31, 3000, "s"), chunk_size=500)
        head = books.store.max_position()
        stop = threading.Event()
        acknowledged: list[int] = []

        def published(position: int) -> None:
            acknowledged.append(position)
            stop.set()  # as SIGTERM does, while the first batch of the backlog is out

        relay = KafkaRelay(
            books.store, bootstrap=bootstrap, topic=topic, batch_size=200, on_published=published
        )
        runner = threading.Thread(target=relay.run, args=(stop,), daemon=True)
        started = time.monotonic()
        runner.start()
        runner.join(timeout=60)
        assert not runner.is_alive()
        assert time.monotonic() - started < 30
        try:
            assert len(acknowledged) == 1, f"{len(acknowledged)} batches after the stop"
            assert relay.checkpoint() == acknowledged[0] < head
            # what it acknowledged is in the topic; the rest waits for the next run
            positions = [n.id for n in books.store.read_log(0, 200)]
            assert positions[-1] == acknowledged[0]
            delivered = read_topic(bootstrap, topic, positions)
            assert sorted(e.position for _, _, e, _ in delivered) == positions
        finally:
            relay.close()

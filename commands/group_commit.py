"""Group commit: the concurrent callers of one ledger share transactions.

Callers (threads, or asyncio tasks through :class:`~ledger.AsyncLedger`) put their
commands in a queue and wait. One committer thread per ledger takes everything
queued (up to :data:`GROUP_COMMANDS_MAX` commands), decides it as one group, appends
it in one transaction and wakes the callers. There is no timer: a lone caller's
command is taken at once, and a group is whatever arrived while the previous one was
being committed (the way PostgreSQL's WAL flush amortises a commit among the
backends waiting for it).

Each command keeps its own outcome: a rejected or invalid command leaves no trace in
the group. A caller is woken only once its group has committed (or failed). If the
commit fails (another process won a race, a key was retried there, the connection
dropped), the group is run again on fresh state with the executor's bounded retries,
which replay whatever did commit.

Groups are decided on the cached states when every state they need is cached, without
reading anything (not even the keys, which the append's guard checks): one statement
per group. After a failed commit, groups read their states again for a while
(:data:`CAREFUL_S`), since other processes are writing the same accounts; the keys
are still left to the append's guard (a key another process took fails the append,
and the group is run again with its keys read). An account read from the store once
is read again only if its latest version is not the one held. The callers of the
group committed last are woken before the next group's read, and whoever is queued
when that read returns joins the group (their states read in turn, up to the group's
limit): one append, one hold of the writers' lock, carries both. Measured with 4
processes x 8 threads on one PostgreSQL: groups of 4.0 -> 7.3 commands,
5,037-5,366 -> 6,223-6,419 payments/s.

**Deciding the next group while one is written**, on the committer thread: see
:mod:`ledger.commands.commit_thread`.

**On an event loop.** When the store can append from a loop, the groups of an event loop's
tasks are committed by that loop itself: see :mod:`ledger.commands.loop_commit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from ledger.errors import LimitExceeded, Overloaded, StoreError
from ledger.logs import get_logger
from ledger.outcome import Outcome
from ledger.sealing import Sealer, sealing
from ledger.store import (
    AppendConflict,
    CommitterConnection,
    EventStore,
    SendingAhead,
)

from .callers import (
    AsyncWaiter,
    Barrier,
    Settlement,
    Submission,
    ThreadWaiter,
    Waiter,
    settle,
    wake_loop,
)
from .commit_thread import commit_loop
from .executor import BATCH_MAX, Decision, Executor, Print
from .loop_commit import LoopDriver, awaited_on
from .models import Command

__all__ = [
    "CAREFUL_S",
    "GROUP_COMMANDS_MAX",
    "QUEUE_COMMANDS_MAX",
    "AsyncWaiter",
    "GroupCommitStats",
    "GroupCommitter",
    "LoopDriver",
    "ThreadWaiter",
    "Waiter",
]

log = get_logger(__name__)
T = TypeVar("T")

#: Most commands decided and committed together in one transaction.
GROUP_COMMANDS_MAX = 1000
#: Most commands waiting in the queue; a submission beyond it raises Overloaded.
QUEUE_COMMANDS_MAX = 50_000
#: Seconds during which groups read their states again after a failed commit.
CAREFUL_S = 1.0


@dataclass(slots=True)
class GroupCommitStats:
    """Counters since the ledger was opened (for metrics and tests)."""

    #: Transactions committed by the group-commit path.
    commits: int = 0
    #: Commands decided by it (replays included).
    commands: int = 0
    #: The most commands one group carried.
    largest_group: int = 0
    #: The most commits any one submission waited for after it was queued, its own
    #: included: the bound the queue's arrival order gives.
    most_commits_waited: int = 0
    #: Groups whose commit failed and that were run again on fresh state.
    redone: int = 0
    #: Of :attr:`commits`, those decided and appended on an event loop.
    loop_commits: int = 0
    #: Groups decided while the previous group's append was in flight and sent as
    #: soon as it committed (whether their own append then committed or was redone).
    sent_ahead: int = 0
    #: Submissions that joined a group while it read its states (after a conflict).
    joined: int = 0


class GroupCommitter:
    """Shares transactions among the concurrent callers of one executor.

    Thread-safe. The committer thread starts on the first submission (again in a
    forked child) and stops at :meth:`close`, which first finishes everything queued.
    """

    def __init__(
        self,
        executor: Executor,
        store: EventStore,
        *,
        group_commands_max: int = GROUP_COMMANDS_MAX,
        queue_commands_max: int = QUEUE_COMMANDS_MAX,
        sealer: Sealer | None = None,
    ) -> None:
        for name, limit in (
            ("group_commands_max", group_commands_max),
            ("queue_commands_max", queue_commands_max),
        ):
            if type(limit) is not int or limit < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, not {limit!r:.40}")
        self.executor = executor
        self.store = store
        #: The ledger's sealer, in use on the committer thread (see ledger.sealing).
        self.sealer = sealer
        self.group_commands_max = group_commands_max
        self.queue_commands_max = queue_commands_max
        self.stats = GroupCommitStats()
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[Submission | Barrier] = deque()
        self._queued_commands = 0
        self._closing = False
        self._thread: threading.Thread | None = None
        #: Until then (monotonic seconds), groups read their states again.
        self._careful_until = 0.0
        #: Whether a driver (the thread, or one event loop) holds the executor.
        self._busy = False
        #: Queued submissions and barriers that only the thread serves promptly.
        self._thread_work = 0
        #: The store's loop appender factory (None: every group goes to the thread).
        #: Optional features are looked up on the store's class, so that a wrapper
        #: that passes unknown attributes on (a fault injector, a metrics shim) is
        #: not bypassed: its own append is used unless it offers the feature itself.
        self._loop_appender = _feature(store, "loop_appender")
        #: The store's factory of a connection for the committer thread, if any.
        self._committer_connection = _feature(store, "committer_connection")
        #: The committer thread's connection (None: it goes through the store).
        self._connection: CommitterConnection | None = None
        #: The same, if it sends appends ahead of their results (see _look_ahead).
        self._sender: SendingAhead | None = None
        #: Queued submissions at which a submission wakes the committer thread, which
        #: is waiting for an append's result (0: no wake-up wanted), and the socket
        #: pair it is woken through.
        self._wake_at = 0
        self._wake: tuple[socket.socket, socket.socket] | None = None
        #: Submissions in the group resolved last (their callers may soon be back).
        self._last_resolved = 0
        self._drivers: dict[asyncio.AbstractEventLoop, LoopDriver] = {}
        self._off_loop: ThreadPoolExecutor | None = None
        self._pid = os.getpid()

    # -- callers ------------------------------------------------------------------------

    def submit(self, commands: Sequence[Command], waiter: Waiter) -> None:
        """Queue ``commands`` (decided and committed together, each on its own); the
        waiter gets one outcome per command. Raises LimitExceeded for more than
        BATCH_MAX commands, :class:`Overloaded` when the queue is full and StoreError
        once closed (nothing is queued then)."""
        if len(commands) > BATCH_MAX:
            raise LimitExceeded(f"{len(commands)} commands in one batch; the limit is {BATCH_MAX}")
        submission = Submission(commands, waiter, 0)
        with self._cond:
            if self._closing:
                raise StoreError("the ledger is closed")
            waiting = self._queued_commands
            if waiting and waiting + len(commands) > self.queue_commands_max:
                raise Overloaded(
                    f"{waiting} commands are waiting to be committed (the limit is "
                    f"{self.queue_commands_max}); nothing was recorded, retry after a "
                    "short pause"
                )
            self._after_fork()
            driver = self._driver_of(waiter)
            submission.commits_at_submit = self.stats.commits
            self._queue.append(submission)
            self._queued_commands += len(commands)
            if driver is None:
                self._thread_work += 1
                self._ensure_started()
                self._cond.notify()
            if self._wake_at and len(self._queue) >= self._wake_at:
                self._wake_committer()
        if driver is not None:
            driver.kick()

    def _driver_of(self, waiter: Waiter) -> LoopDriver | None:
        """The loop driver for an awaiting caller on its own loop (lock held), if the
        store can append from a loop; else None (the thread serves it). A blocking
        caller on a thread whose running loop drives this ledger is refused: it would
        block the loop that has to finish the group in flight."""
        if type(waiter) is AsyncWaiter:
            if self._loop_appender is None:
                return None
            driver = self._drivers.get(waiter.loop)
            if driver is None:
                for gone in [loop for loop in self._drivers if loop.is_closed()]:
                    # Its loop ended (an asyncio.run per request): end its session
                    # now rather than when the object is collected.
                    self._drivers.pop(gone).discard()
                driver = self._drivers[waiter.loop] = LoopDriver(self, waiter.loop)
            return driver
        self._refuse_blocking_in_driving_loop()
        return None

    def _refuse_blocking_in_driving_loop(self) -> None:
        """Raise RuntimeError on the thread of a running loop that drives commits."""
        if self._drivers:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            if loop in self._drivers:
                raise RuntimeError(
                    "a blocking ledger write from inside the event loop that commits "
                    "this ledger's asyncio writes: await the AsyncLedger instead, or "
                    "run the call in a thread (asyncio.to_thread)"
                )

    def run(self, commands: Sequence[Command]) -> list[Outcome]:
        """Queue ``commands`` and wait for their outcomes (from a thread)."""
        if not commands:
            return []
        waiter = ThreadWaiter()
        self.submit(commands, waiter)
        return waiter.wait()

    @contextmanager
    def exclusive(self) -> Iterator[Executor]:
        """The executor, alone: the committer finishes the group it is committing and
        waits until the block ends; commands queued meanwhile wait, in order."""
        barrier = Barrier()
        with self._cond:
            if self._closing:
                raise StoreError("the ledger is closed")
            self._refuse_blocking_in_driving_loop()
            self._ensure_started()
            self._queue.append(barrier)
            self._thread_work += 1
            self._cond.notify()
        barrier.granted.wait()
        try:
            yield self.executor
        finally:
            barrier.released.set()

    def close(self) -> None:
        """Finish everything queued, then stop the committer thread. Refused (with
        RuntimeError) on the thread of a loop that commits this ledger's groups: close
        its AsyncLedger with ``await close()`` instead."""
        with self._cond:
            if self._closing:
                return
            self._refuse_blocking_in_driving_loop()
            self._closing = True
            if self._queue:  # loop submissions whose loop no longer drives them
                self._ensure_started()
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        if self._off_loop is not None:
            self._off_loop.shutdown(wait=True)
        with self._cond:
            drivers, self._drivers = list(self._drivers.values()), {}
            wake, self._wake = self._wake, None
        for end in wake or ():
            end.close()
        for driver in drivers:  # loops whose AsyncLedger was not closed with await
            driver.finish_soon()

    def forget_loop(self, loop: asyncio.AbstractEventLoop) -> LoopDriver | None:
        """Remove (and return) ``loop``'s driver: its async ledger is closing."""
        with self._cond:
            return self._drivers.pop(loop, None)

    # -- the committer thread -------------------------------------------------------------

    def _after_fork(self) -> None:
        """In a forked child (lock held): the parent's committer thread, worker thread
        and event loops do not run here, so nothing holds the executor."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._busy = False
            self._drivers = {}
            self._off_loop = None
            self._connection = self._sender = None  # the parent's: never used here
            for end in self._wake or ():  # this process's copies of the parent's pair
                end.close()
            self._wake, self._wake_at = None, 0

    def _ensure_started(self) -> None:
        """Start the committer (lock held); again in a forked child, where the
        parent's thread does not run."""
        self._after_fork()
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        self._thread = threading.Thread(
            target=commit_loop, args=(self,), name=f"ledger-commit-{id(self):x}", daemon=True
        )
        self._thread.start()

    def _take(self) -> list[Submission] | Barrier | None:
        """Wait for work: the next group (in arrival order, up to the limit), a
        barrier in its turn, or None once closing with nothing left."""
        with self._cond:
            queue = self._queue
            while not queue or self._busy:
                if self._closing and not queue:
                    return None
                self._cond.wait()
            self._busy = True
            if type(queue[0]) is Barrier:
                barrier = queue.popleft()
                assert isinstance(barrier, Barrier)
                self._thread_work -= 1
                return barrier
            return self._pick()

    def _pick(
        self, loop: asyncio.AbstractEventLoop | None = None, room: int | None = None
    ) -> list[Submission]:
        """Take the next group off the queue (lock held; its head is a submission):
        for the thread, whatever comes next; for a loop's driver, only that loop's
        submissions (a blocking caller never waits on a loop that may stop). Up to
        ``room`` commands (default the limit; a first submission larger than the
        limit is taken alone)."""
        queue = self._queue
        picked: list[Submission] = []
        count = 0
        limit = self.group_commands_max if room is None else room
        while queue and type(queue[0]) is Submission:
            sub = queue[0]
            assert isinstance(sub, Submission)
            if count + len(sub.commands) > limit and (picked or room is not None):
                break
            if loop is not None and not awaited_on(sub, loop):
                break
            queue.popleft()
            picked.append(sub)
            count += len(sub.commands)
            if type(sub.waiter) is not AsyncWaiter or self._loop_appender is None:
                self._thread_work -= 1
        self._queued_commands -= count
        return picked

    def _take_on_loop(self, loop: asyncio.AbstractEventLoop) -> list[Submission] | None:
        """The next group for ``loop``'s driver, or None when another driver holds the
        executor, nothing is queued, or what comes next is not the loop's own (a
        barrier, a thread's or another loop's submission: the thread serves it)."""
        with self._cond:
            queue = self._queue
            if self._busy or not queue:
                return None
            head = queue[0]
            if type(head) is Barrier or not awaited_on(cast(Submission, head), loop):
                self._hand_to_thread()
                return None
            self._busy = True
            return self._pick(loop)

    def _release(self, *, hand_off: bool = False) -> None:
        """The executor is free again; wake the thread if it has work of its own, or
        (``hand_off``: a loop's driver stopped and will not look again) if anything is
        queued at all."""
        with self._cond:
            self._busy = False
            if hand_off and self._queue:
                self._hand_to_thread()
            elif self._thread_work or self._closing:
                self._cond.notify()

    def _hand_to_thread(self) -> None:
        """Let the committer thread take what is queued (lock held)."""
        if not self._closing:
            self._ensure_started()
        self._cond.notify()

    @staticmethod
    def _fail(subs: list[Submission], error: BaseException) -> None:
        for sub in subs:
            if not sub.done:
                sub.done = True
                sub.waiter.resolve(None, error)

    def _wake_pair(self) -> tuple[socket.socket, socket.socket]:
        """The socket pair a submission wakes the waiting committer thread through."""
        pair = self._wake
        if pair is None:
            pair = self._wake = socket.socketpair()
            for end in pair:
                end.setblocking(False)
        return pair

    def _wake_committer(self) -> None:
        """Wake the committer thread from its wait for an append (lock held)."""
        self._wake_at = 0
        pair = self._wake
        if pair is not None:
            with contextlib.suppress(OSError):  # full: a wake-up is pending anyway
                pair[1].send(b"\0")

    # -- on an event loop ------------------------------------------------------------------

    def _failed(self, error: BaseException) -> None:
        """A group's commit failed. After a conflict (another process wrote what this
        one had cached, or took one of its keys) groups read their states again for a
        while; the failed group is run again on fresh state by the caller."""
        if isinstance(error, AppendConflict):
            self.be_careful()

    def be_careful(self) -> None:
        """Have groups read their states again for a while (:data:`CAREFUL_S`)."""
        self._careful_until = time.monotonic() + CAREFUL_S

    def _in_worker(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Run ``fn`` in the committer's worker thread, with the ledger's sealer."""
        if self._off_loop is None:
            name = f"ledger-loopwork-{id(self):x}"
            self._off_loop = ThreadPoolExecutor(1, thread_name_prefix=name)

        def sealed() -> T:
            with sealing(self.sealer):
                return fn(*args, **kwargs)

        try:
            return self._off_loop.submit(sealed)
        except RuntimeError:  # shut down by close()
            raise StoreError("the ledger is closed") from None

    def _accept(
        self,
        subs: list[Submission],
        decision: Decision,
        here: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """A group's append committed: keep its states and outcomes, wake its callers."""
        self._keep(decision)
        self._resolve(subs, decision.outcomes, here)

    def _keep(self, decision: Decision) -> None:
        """Keep a committed decision's states and outcomes, and log it."""
        try:
            self.executor.accept(decision)
        except Exception as e:  # a defect: the outcomes stand (committed), states are read again
            log.error("ledger.keep_states_failed", error=type(e).__name__)
            self.executor.reset()
        decision.log()

    def _redo(self, subs: list[Submission], prints: list[Print], flat: list[Command]) -> None:
        """Run a group whose commit failed again, with the executor's bounded retries
        (which replay whatever did commit); an error that outlasts them reaches every
        caller of the group."""
        self.stats.redone += 1
        log.debug("ledger.group_redo", commands=len(prints))
        try:
            self.executor.forget(flat)
            outcomes = self.executor.run([p[0] for p in prints])
        except BaseException as e:  # delivered to the callers
            for sub in subs:
                sub.done = True
                sub.waiter.resolve(None, e)
            return
        self.stats.commits += 1
        self._resolve(subs, outcomes)

    def _resolve(
        self,
        subs: list[Submission],
        outcomes: list[Outcome],
        here: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        stats = self.stats
        stats.commands += len(outcomes)
        self._last_resolved = len(subs)
        stats.largest_group = max(stats.largest_group, len(outcomes))
        loops: dict[asyncio.AbstractEventLoop, list[Settlement]] = {}
        start = 0
        for sub in subs:
            end = start + len(sub.commands)
            mine = outcomes[start:end]
            start = end
            stats.most_commits_waited = max(
                stats.most_commits_waited, stats.commits - sub.commits_at_submit
            )
            waiter = sub.waiter
            sub.done = True
            if type(waiter) is AsyncWaiter:
                loops.setdefault(waiter.loop, []).append((waiter.future, mine, None))
            else:
                waiter.resolve(mine, None)
        for loop, settlements in loops.items():
            if loop is here:
                settle(settlements)
            else:
                wake_loop(loop, settlements)


def _feature(store: EventStore, name: str) -> Callable[[], Any] | None:
    """The store's optional factory ``name`` (bound), if its class offers one."""
    if getattr(type(store), name, None) is None:
        return None
    factory: Callable[[], Any] = getattr(store, name)
    return factory

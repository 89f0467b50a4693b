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
(:data:`CAREFUL_S`), since other processes are writing the same accounts.

Why one thread that decides and appends, rather than deciding the next group while
the previous one commits: measured here, handing groups between two threads cost
more (GIL and wake-ups) than the overlap saved, once a decision needs no reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from ledger.errors import LimitExceeded, Overloaded, StoreError
from ledger.logs import get_logger
from ledger.outcome import Outcome
from ledger.sealing import Sealer, sealing
from ledger.store import AppendConflict, EventStore

from .executor import BATCH_MAX, Executor, Print, flatten, prints_of
from .models import Command

__all__ = [
    "CAREFUL_S",
    "GROUP_COMMANDS_MAX",
    "QUEUE_COMMANDS_MAX",
    "AsyncWaiter",
    "GroupCommitStats",
    "GroupCommitter",
    "ThreadWaiter",
    "Waiter",
]

log = get_logger(__name__)

#: Most commands decided and committed together in one transaction.
GROUP_COMMANDS_MAX = 1000
#: Most commands waiting in the queue; a submission beyond it raises Overloaded.
QUEUE_COMMANDS_MAX = 50_000
#: Seconds during which groups read their states again after a failed commit.
CAREFUL_S = 1.0


class Waiter(ABC):
    """Where a submission's result goes; :meth:`resolve` is called exactly once."""

    __slots__ = ()

    @abstractmethod
    def resolve(self, outcomes: list[Outcome] | None, error: BaseException | None) -> None:
        """Deliver the outcomes (one per command) or the error."""


class ThreadWaiter(Waiter):
    """A blocking waiter for a caller thread (a lock released on resolve: the cheapest
    wake-up the threading module offers)."""

    __slots__ = ("_error", "_lock", "_outcomes")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._outcomes: list[Outcome] | None = None
        self._error: BaseException | None = None

    def resolve(self, outcomes: list[Outcome] | None, error: BaseException | None) -> None:
        """Deliver and wake the caller."""
        self._outcomes, self._error = outcomes, error
        self._lock.release()

    def wait(self) -> list[Outcome]:
        """Block until resolved; the outcomes, or raise the error."""
        self._lock.acquire()
        if self._error is not None:
            raise self._error
        assert self._outcomes is not None
        return self._outcomes


class AsyncWaiter(Waiter):
    """A waiter for an asyncio task: a future on the task's own loop, resolved from the
    committer thread (the waiters of one group share one wake-up of their loop)."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[list[Outcome]] = loop.create_future()

    def resolve(self, outcomes: list[Outcome] | None, error: BaseException | None) -> None:
        """Deliver on the loop's thread."""
        _wake_loop(self.loop, [(self.future, outcomes, error)])


_Settlement = tuple["asyncio.Future[list[Outcome]]", list[Outcome] | None, BaseException | None]


def _wake_loop(loop: asyncio.AbstractEventLoop, settlements: list[_Settlement]) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
        loop.call_soon_threadsafe(_settle, settlements)


def _settle(settlements: list[_Settlement]) -> None:
    """On the loop: resolve the futures. A cancelled one just drops its result: the
    command applied or not, and a retry with its key replays the outcome."""
    for future, outcomes, error in settlements:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(outcomes or [])


@dataclass(slots=True)
class _Submission:
    #: The commands (their fingerprints are made by the committer, for the whole
    #: group at once: cheaper there than one by one between the callers' own work).
    commands: Sequence[Command]
    waiter: Waiter
    #: The number of commits when it was queued (for the fairness counter).
    commits_at_submit: int
    #: Whether its waiter was resolved.
    done: bool = False


@dataclass(slots=True)
class _Barrier:
    """A caller that needs the executor alone (the bulk path): the committer stops
    taking work, in the barrier's turn, until the caller is done."""

    granted: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)


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
        if group_commands_max < 1 or queue_commands_max < 1:
            raise ValueError("group and queue limits must be at least 1")
        self.executor = executor
        self.store = store
        #: The ledger's sealer, in use on the committer thread (see ledger.sealing).
        self.sealer = sealer
        self.group_commands_max = group_commands_max
        self.queue_commands_max = queue_commands_max
        self.stats = GroupCommitStats()
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[_Submission | _Barrier] = deque()
        self._queued_commands = 0
        self._closing = False
        self._thread: threading.Thread | None = None
        #: Until then (monotonic seconds), groups read their states again.
        self._careful_until = 0.0

    # -- callers ------------------------------------------------------------------------

    def submit(self, commands: Sequence[Command], waiter: Waiter) -> None:
        """Queue ``commands`` (decided and committed together, each on its own); the
        waiter gets one outcome per command. Raises LimitExceeded for more than
        BATCH_MAX commands, :class:`Overloaded` when the queue is full and StoreError
        once closed (nothing is queued then)."""
        if len(commands) > BATCH_MAX:
            raise LimitExceeded(f"{len(commands)} commands in one batch; the limit is {BATCH_MAX}")
        submission = _Submission(commands, waiter, 0)
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
            self._ensure_started()
            submission.commits_at_submit = self.stats.commits
            self._queue.append(submission)
            self._queued_commands += len(commands)
            self._cond.notify()

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
        barrier = _Barrier()
        with self._cond:
            if self._closing:
                raise StoreError("the ledger is closed")
            self._ensure_started()
            self._queue.append(barrier)
            self._cond.notify()
        barrier.granted.wait()
        try:
            yield self.executor
        finally:
            barrier.released.set()

    def close(self) -> None:
        """Finish everything queued, then stop the committer thread."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    # -- the committer thread -------------------------------------------------------------

    def _ensure_started(self) -> None:
        """Start the committer (lock held); again in a forked child, where the
        parent's thread does not run."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        self._thread = threading.Thread(
            target=self._commit_loop, name=f"ledger-commit-{id(self):x}", daemon=True
        )
        self._thread.start()

    def _take(self) -> list[_Submission] | _Barrier | None:
        """Wait for work: the next group (in arrival order, up to the limit), a
        barrier in its turn, or None once closing with nothing left."""
        with self._cond:
            queue = self._queue
            while not queue:
                if self._closing:
                    return None
                self._cond.wait()
            if type(queue[0]) is _Barrier:
                barrier = queue.popleft()
                assert isinstance(barrier, _Barrier)
                return barrier
            picked: list[_Submission] = []
            count = 0
            while queue and type(queue[0]) is _Submission:
                sub = queue[0]
                assert isinstance(sub, _Submission)
                if picked and count + len(sub.commands) > self.group_commands_max:
                    break
                queue.popleft()
                picked.append(sub)
                count += len(sub.commands)
            self._queued_commands -= count
            return picked

    def _commit_loop(self) -> None:
        with sealing(self.sealer):
            self._commit_forever()

    def _commit_forever(self) -> None:
        while True:
            work = self._take()
            if work is None:
                return
            if isinstance(work, _Barrier):
                work.granted.set()
                work.released.wait()
            else:
                try:
                    self._commit(work)
                except BaseException as e:  # a defect: never leave a caller waiting
                    log.error("ledger.group_commit_failed", error=type(e).__name__)
                    for sub in work:
                        if not sub.done:
                            sub.done = True
                            sub.waiter.resolve(None, e)

    def _commit(self, subs: list[_Submission]) -> None:
        """Decide a group, append it in one transaction, wake its callers."""
        commands = [c for sub in subs for c in sub.commands]
        prints = prints_of(commands)
        flat = flatten(commands)
        careful = time.monotonic() < self._careful_until
        executor = self.executor
        try:
            decision = executor.decide(prints, flat, trust_cache=not careful, refresh=careful)
            if decision.batch.events or decision.batch.keys:
                self.store.append(decision.batch)
                self.stats.commits += 1
        except AppendConflict:
            # Another process wrote what this one had cached (or took one of the keys):
            # read states again for a while, and run this group again on fresh state.
            self._careful_until = time.monotonic() + CAREFUL_S
            self._redo(subs, prints, flat)
            return
        except BaseException:  # unreachable store etc.: redone with retries
            self._redo(subs, prints, flat)
            return
        executor.accept(decision)
        decision.log()
        self._resolve(subs, decision.outcomes)

    def _redo(self, subs: list[_Submission], prints: list[Print], flat: list[Command]) -> None:
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

    def _resolve(self, subs: list[_Submission], outcomes: list[Outcome]) -> None:
        stats = self.stats
        stats.commands += len(outcomes)
        stats.largest_group = max(stats.largest_group, len(outcomes))
        loops: dict[asyncio.AbstractEventLoop, list[_Settlement]] = {}
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
            _wake_loop(loop, settlements)

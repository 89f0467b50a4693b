"""Group commit on an event loop: the groups of a loop's tasks committed by that loop.

When the store can append from a loop (PostgreSQL:
``loop_appender()``, see :class:`~ledger.store.LoopAppender`), the groups of an
event loop's tasks are committed by that loop itself (:class:`LoopDriver`): it
decides a group on the loop when every state is cached (in a worker thread when the
group needs reads, or after a failed commit), awaits the append on a connection of
its own and wakes its tasks directly. In an async web service the committer thread
competed with the loop for the interpreter lock: each time the thread needed it, it
waited up to a switch interval (5 ms) for the busy loop, and the loop sat idle while
its requests waited on that commit. Measured with ``benchmarks.http_service``: the
web process went from 85% to 95% busy. One driver holds the executor at a time (the
thread, or one loop); a loop's driver takes only its own loop's submissions, from
the head of the queue, so a thread never waits on a loop that may stop; work at the
head that is not its own it leaves to the thread (which takes anything), so the queue
is served in arrival order. If a loop stops with its group in flight, that group's
callers get :class:`~ledger.errors.StoreError` (retry with the same key), unless
they were cancelled first, and what is queued passes to the thread. While the thread
keeps deciding ahead (threads submitting without pause), it holds the executor from
one group to the next and commits a loop's submissions itself, in their turn: correct
and in arrival order, but the loop's tasks are then woken from the thread, as when
the store has no loop appender.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ledger.errors import StoreError
from ledger.logs import get_logger
from ledger.sealing import sealing
from ledger.store import EventStore, LoopAppender

from .callers import AsyncWaiter, Submission, group_prints
from .executor import Decision

if TYPE_CHECKING:
    from .group_commit import GroupCommitter

__all__ = ["NO_READS", "LoopDriver", "ReadsNeeded", "awaited_on", "commit_on_loop"]

log = get_logger(__name__)
T = TypeVar("T")


def awaited_on(sub: Submission, loop: asyncio.AbstractEventLoop) -> bool:
    waiter = sub.waiter
    return type(waiter) is AsyncWaiter and waiter.loop is loop


class ReadsNeeded(Exception):
    """Deciding on the loop would read from the store."""


class _NoReadsStore:
    """A store that refuses to read: deciding with it on the event loop either needs no
    reads (every state cached) or stops before changing anything."""

    def __getattr__(self, name: str) -> Any:
        raise ReadsNeeded(name)


NO_READS = cast(EventStore, _NoReadsStore())


class WorkerHoldsExecutor(BaseException):
    """The driver was cancelled while the worker thread holds the executor."""


_CUT_SHORT = (
    "the event loop stopped while this command was being committed: whether it "
    "applied is unknown; retry with the same key (it replays the outcome if it did)"
)
_NOT_APPLIED = (
    "the event loop stopped while this command was being decided: it was not "
    "applied; retry with the same key"
)


class LoopDriver:
    """Commits groups on one event loop, for the tasks of that loop.

    Started by a submission from the loop (:meth:`kick`), it runs as a task while work
    is queued and the executor is free, and ends when the queue is empty or another
    driver holds the executor (that one takes what is queued next). So an async
    service's event loop decides its groups itself and awaits each append: while the
    store commits, the loop goes on serving requests, with no thread switch per group.
    """

    def __init__(self, committer: GroupCommitter, loop: asyncio.AbstractEventLoop) -> None:
        self.committer = committer
        self.loop = loop
        self.task: asyncio.Task[None] | None = None
        self.appender: LoopAppender | None = None

    def kick(self) -> None:
        """Make sure the driver runs (on the loop's thread)."""
        if self.task is None:
            self.task = self.loop.create_task(self._drive())
            self.task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """The driver's task is done. Cancelled before its first step (its body, and
        the ``finally`` that forgets it, never ran) or between groups, it left its
        loop's queued work to nobody: that passes to the thread, and the next
        submission starts a new driver."""
        if self.task is task:
            self.task = None
        if task.cancelled():
            committer = self.committer
            with committer._cond:
                if committer._queue:
                    committer._hand_to_thread()

    async def _drive(self) -> None:
        committer = self.committer
        try:
            while True:
                # One turn of the loop first: the callbacks already ready (requests
                # being parsed, tasks about to submit) join this group rather than the
                # next (measured: groups of 12 -> 17 commands, fewer commits).
                await asyncio.sleep(0)
                work = committer._take_on_loop(self.loop)
                if work is None:
                    return
                held, stopped = True, False
                try:
                    if self.appender is None:
                        assert committer._loop_appender is not None
                        self.appender = committer._loop_appender()
                    held = await commit_on_loop(committer, work, self.appender, self.loop)
                except WorkerHoldsExecutor:
                    held = False
                    raise asyncio.CancelledError from None
                except asyncio.CancelledError:
                    stopped = True
                    raise
                except Exception as e:  # a defect: never leave a caller waiting
                    log.error("ledger.group_commit_failed", error=type(e).__name__)
                    committer._fail(work, e)
                except BaseException as e:  # KeyboardInterrupt and the like: passed on
                    committer._fail(work, e)
                    stopped = True
                    raise
                finally:
                    if held:
                        committer._release(hand_off=stopped)
        finally:
            self.task = None

    def finish_soon(self) -> None:
        """From another thread: have the loop :meth:`finish` (its connection is closed
        there, once its groups in flight are done). A closed loop's connection is
        released at once, without it."""
        if self.appender is None:
            return
        if self.loop.is_closed():
            self.discard()
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            asyncio.run_coroutine_threadsafe(self.finish(), self.loop)

    def discard(self) -> None:
        """Release the connection of this driver's loop, which has closed."""
        appender, self.appender = self.appender, None
        if appender is not None:
            appender.discard()

    async def finish(self) -> None:
        """Wait for the groups in flight, then close the loop's connection."""
        while self.task is not None:
            await asyncio.wait({self.task})
        appender, self.appender = self.appender, None
        if appender is not None:
            await appender.aclose()


async def commit_on_loop(
    committer: GroupCommitter,
    subs: list[Submission],
    appender: LoopAppender,
    loop: asyncio.AbstractEventLoop,
) -> bool:
    """Decide a group on the loop (in a worker thread if it needs reads), await its
    append, wake its callers. Raises WorkerHoldsExecutor when cancelled while a
    worker thread holds the executor (it releases it when done)."""
    prints, flat = group_prints(subs)
    careful = time.monotonic() < committer._careful_until
    executor = committer.executor
    decision: Decision | None = None
    if not careful:
        try:
            with sealing(committer.sealer):
                decision = executor.decide(prints, flat, trust_cache=True, store=NO_READS)
        except ReadsNeeded:
            pass
    try:
        if decision is None:
            # After a conflict: states read again first, keys left to the guard,
            # as on the committer thread (see _read_states).
            work = committer._in_worker(
                executor.decide, prints, flat, trust_cache=True, refresh=careful
            )
            try:
                decision = await await_worker(committer, work)
            except WorkerHoldsExecutor:  # decided, never appended: not applied
                committer._fail(subs, StoreError(_NOT_APPLIED))
                raise
        if decision.batch.events or decision.batch.keys:
            await appender.append(decision.batch)
            committer.stats.commits += 1
            committer.stats.loop_commits += 1
    except WorkerHoldsExecutor:
        raise
    except asyncio.CancelledError:
        # The loop is stopping with this group in flight: whether it committed is
        # unknown. Its states are read again, and its callers are told to retry
        # (their keys replay the outcome if it did commit).
        committer.be_careful()
        executor.forget(flat)
        committer._fail(subs, StoreError(_CUT_SHORT))
        raise
    except Exception as e:  # a conflict, an unreachable store: redone with retries
        committer._failed(e)
        await await_worker(committer, committer._in_worker(committer._redo, subs, prints, flat))
        return True
    with sealing(committer.sealer):
        committer._accept(subs, decision, loop)
    return True


async def await_worker(committer: GroupCommitter, work: Future[T]) -> T:
    """Await work running in the worker thread; if the awaiting task is cancelled,
    the executor is released only once the work is done. Shielded: cancelling the
    wrapper would cancel ``work`` itself if it had not started yet (a group's redo
    then never ran, and its callers were never answered)."""
    try:
        return await asyncio.shield(asyncio.wrap_future(work))
    except asyncio.CancelledError:
        if not work.done():
            work.add_done_callback(lambda _: committer._release(hand_off=True))
            raise WorkerHoldsExecutor from None
        raise

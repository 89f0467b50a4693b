"""The callers' side of the group commit: what a caller queues (a submission, or a
barrier for the bulk path), how it waits (a waiter: a lock for a thread, a future for
an asyncio task) and how it is woken. See :mod:`ledger.commands.group_commit`."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

from ledger.outcome import Outcome

from .executor import Print, flatten, prints_of
from .models import Command

__all__ = [
    "AsyncWaiter",
    "Barrier",
    "Settlement",
    "Submission",
    "ThreadWaiter",
    "Waiter",
    "group_prints",
    "settle",
    "wake_loop",
]


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
        wake_loop(self.loop, [(self.future, outcomes, error)])


Settlement = tuple["asyncio.Future[list[Outcome]]", list[Outcome] | None, BaseException | None]


def wake_loop(loop: asyncio.AbstractEventLoop, settlements: list[Settlement]) -> None:
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
        loop.call_soon_threadsafe(settle, settlements)


def settle(settlements: list[Settlement]) -> None:
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
class Submission:
    #: The commands (their fingerprints are made by the committer, for the whole
    #: group at once: cheaper there than one by one between the callers' own work).
    commands: Sequence[Command]
    waiter: Waiter
    #: The number of commits when it was queued (for the fairness counter).
    commits_at_submit: int
    #: Whether its waiter was resolved.
    done: bool = False


@dataclass(slots=True)
class Barrier:
    """A caller that needs the executor alone (the bulk path): the committer stops
    taking work, in the barrier's turn, until the caller is done."""

    granted: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)


def group_prints(subs: list[Submission]) -> tuple[list[Print], list[Command]]:
    """A group's commands with their prints, and flattened (atomic batches opened)."""
    commands = [c for sub in subs for c in sub.commands]
    return prints_of(commands), flatten(commands)

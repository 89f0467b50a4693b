"""Recipes that run on a :class:`~ledger.Ledger` or an :class:`~ledger.AsyncLedger`.

A recipe (see :mod:`ledger.payments`) is written once, as a generator that yields
the steps it needs, :class:`Write` (a command to apply, answered with its outcome)
and :class:`Read` (a read of the ledger, answered with its value), and returns its
result. :func:`flow` turns it into a function that takes the ledger first: given a
``Ledger`` it runs the steps and returns the result; given an ``AsyncLedger`` it
returns a coroutine that awaits them (writes share the group commit, reads run in
the loop's thread pool). A recipe validates its arguments before its first step, so
a refused request has used no key.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar, overload

from ledger.commands.aio import AsyncLedger
from ledger.commands.models import Command
from ledger.commands.service import Ledger
from ledger.outcome import Outcome

__all__ = ["Flow", "Read", "Steps", "Write", "flow", "read", "write"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Write:
    """Apply ``command``; the recipe receives its :class:`~ledger.Outcome` (a command
    that does not apply raises its typed error out of the recipe)."""

    command: Command


@dataclass(frozen=True, slots=True)
class Read(Generic[T]):
    """Read something from the ledger: ``fn`` is called with the (synchronous)
    :class:`~ledger.Ledger`, in a worker thread under asyncio."""

    fn: Callable[[Ledger], T]


Steps = Generator[Write | Read[Any], Any, R]
"""What a recipe is: a generator of steps that returns the recipe's result."""


def write(command: Command) -> Steps[Outcome]:
    """The step that applies ``command`` (``outcome = yield from write(command)``)."""
    outcome: Outcome = yield Write(command)
    return outcome


def read(fn: Callable[[Ledger], T]) -> Steps[T]:
    """The step that reads ``fn(ledger)`` (``value = yield from read(fn)``)."""
    value: T = yield Read(fn)
    return value


class Flow(Generic[P, R]):
    """A recipe bound to no ledger yet: call it with a ``Ledger`` (returns the result)
    or an ``AsyncLedger`` (returns a coroutine)."""

    def __init__(self, steps: Callable[P, Steps[R]]) -> None:
        self.steps = steps
        """The recipe's generator function (to compose recipes with ``yield from``)."""
        functools.update_wrapper(self, steps)

    @overload
    def __call__(self, books: Ledger, /, *args: P.args, **kwargs: P.kwargs) -> R: ...

    @overload
    def __call__(
        self, books: AsyncLedger, /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, R]: ...

    def __call__(
        self, books: Ledger | AsyncLedger, /, *args: P.args, **kwargs: P.kwargs
    ) -> R | Coroutine[Any, Any, R]:
        if isinstance(books, AsyncLedger):
            return _run_async(books, self.steps(*args, **kwargs))
        if not isinstance(books, Ledger):
            raise TypeError(f"a recipe takes a Ledger or an AsyncLedger, not {type(books)}")
        return _run(books, self.steps(*args, **kwargs))

    def __repr__(self) -> str:
        return f"<recipe {self.steps.__module__}.{self.steps.__qualname__}>"


def flow(steps: Callable[P, Steps[R]]) -> Flow[P, R]:
    """Make a recipe from a generator function of steps (see the module docstring)."""
    return Flow(steps)


def _run(books: Ledger, steps: Steps[R]) -> R:
    answer: Any = None
    try:
        while True:
            try:
                step = steps.send(answer)
            except StopIteration as done:
                result: R = done.value
                return result
            answer = books.execute(step.command) if isinstance(step, Write) else step.fn(books)
    finally:
        steps.close()


async def _run_async(books: AsyncLedger, steps: Steps[R]) -> R:
    answer: Any = None
    try:
        while True:
            try:
                step = steps.send(answer)
            except StopIteration as done:
                result: R = done.value
                return result
            if isinstance(step, Write):
                answer = await books.execute(step.command)
            else:
                answer = await asyncio.to_thread(step.fn, books.sync)
    finally:
        steps.close()

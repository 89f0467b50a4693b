"""Retrying: one back-off policy and one loop for every retry in the ledger.

:class:`Backoff` is the delay before each next attempt (exponential, capped, with
optional full jitter, which spreads writers that collided so they stop colliding).
:func:`keep_running` is the loop of the long-running workers (the projection
runner, the Kafka relay and projector): run a step until told to stop, wait when it
had nothing to do, and wait out a retryable error with the back-off, which starts
again from the first delay after a success. The executor's bounded attempts use
:class:`Backoff` directly.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Backoff", "keep_running"]


@dataclass(slots=True)
class Backoff:
    """Delays before retries: ``first_s`` doubling per attempt up to ``max_s``; with
    ``jitter``, a uniform draw between 0 and that."""

    first_s: float
    max_s: float
    jitter: bool = False
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def delay(self, attempt: int) -> float:
        """The delay before retry number ``attempt`` + 1 (``attempt`` counts from 0)."""
        capped = min(self.first_s * 2 ** min(attempt, 62), self.max_s)
        return self._rng.uniform(0, capped) if self.jitter else capped


def keep_running(
    step: Callable[[], int],
    stop: threading.Event,
    *,
    retry_on: tuple[type[BaseException], ...],
    backoff: Backoff,
    idle_s: float,
    on_retry: Callable[[BaseException, float], None],
    busy_s: float = 0.0,
) -> None:
    """Call ``step`` until ``stop`` is set. A step that returns 0 (nothing done) is
    followed by a pause of ``idle_s``, one that did something by ``busy_s`` (work
    arriving meanwhile is then taken in one step rather than many); one that raises
    one of ``retry_on`` is reported to ``on_retry`` (the error and the delay) and
    retried after the back-off, which doubles until a step succeeds. Any other error
    propagates."""
    failures = 0
    while not stop.is_set():
        try:
            done = step()
        except retry_on as e:
            delay = backoff.delay(failures)
            failures += 1
            on_retry(e, delay)
            stop.wait(delay)
            continue
        failures = 0
        if done == 0:
            stop.wait(idle_s)
        elif busy_s > 0:
            stop.wait(busy_s)

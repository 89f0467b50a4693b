"""The one retry helper: back-off delays, and the workers' run loop (retry with
doubling pauses, reset after a success, idle pauses, other errors propagate)."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import StoreUnavailable
from ledger.retry import Backoff, keep_running


def test_delays_double_up_to_the_cap() -> None:
    backoff = Backoff(0.25, 1.5)
    assert [backoff.delay(n) for n in range(5)] == [0.25, 0.5, 1.0, 1.5, 1.5]
    assert backoff.delay(10_000) == 1.5  # no overflow however long the outage


@given(st.integers(0, 200), st.floats(0.0001, 1.0), st.floats(0.0001, 5.0))
def test_jittered_delays_stay_between_zero_and_the_plain_one(
    attempt: int, first: float, cap: float
) -> None:
    plain, jittered = Backoff(first, cap), Backoff(first, cap, jitter=True)
    assert 0 <= jittered.delay(attempt) <= plain.delay(attempt) <= cap


class _Clock(threading.Event):
    """A stop event that records the pauses instead of sleeping, and stops the loop
    after ``steps`` waits."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.waits: list[float] = []
        self.steps = steps

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        if len(self.waits) >= self.steps:
            self.set()
        return self.is_set()


def test_the_loop_retries_with_doubling_pauses_and_starts_again_after_a_success() -> None:
    script = iter(["down", "down", "down", 5, "down", 0, 0])
    failures: list[tuple[str, float]] = []

    def step() -> int:
        outcome = next(script)
        if outcome == "down":
            raise StoreUnavailable("the database restarts")
        assert isinstance(outcome, int)
        return outcome

    stop = _Clock(steps=6)
    keep_running(
        step,
        stop,
        retry_on=(StoreUnavailable,),
        backoff=Backoff(1.0, 3.0),
        idle_s=0.5,
        on_retry=lambda e, delay: failures.append((type(e).__name__, delay)),
    )
    # three failures (1, 2, 3 s), a success that did work (no pause), a failure from
    # the first delay again, then idle pauses
    assert stop.waits == [1.0, 2.0, 3.0, 1.0, 0.5, 0.5]
    assert [d for _, d in failures] == [1.0, 2.0, 3.0, 1.0]
    assert {name for name, _ in failures} == {"StoreUnavailable"}


def test_other_errors_propagate_and_a_set_stop_runs_nothing() -> None:
    def broken() -> int:
        raise ValueError("a defect")

    with pytest.raises(ValueError, match="a defect"):
        keep_running(
            broken,
            threading.Event(),
            retry_on=(StoreUnavailable,),
            backoff=Backoff(1.0, 1.0),
            idle_s=1.0,
            on_retry=lambda e, d: None,
        )
    stopped = threading.Event()
    stopped.set()
    keep_running(
        broken,
        stopped,
        retry_on=(StoreUnavailable,),
        backoff=Backoff(1.0, 1.0),
        idle_s=1.0,
        on_retry=lambda e, d: None,
    )


def test_a_step_that_did_work_is_followed_by_the_busy_pause() -> None:
    script = iter([7, 3, 0, 2])
    stop = _Clock(steps=4)
    keep_running(
        lambda: next(script),
        stop,
        retry_on=(StoreUnavailable,),
        backoff=Backoff(1.0, 1.0),
        idle_s=0.5,
        on_retry=lambda e, d: None,
        busy_s=0.02,
    )
    assert stop.waits == [0.02, 0.02, 0.5, 0.02]

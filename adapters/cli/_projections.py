"""``ledger projections status | rebuild | follow``: the read models."""

from __future__ import annotations

import math
import threading
from contextlib import closing
from typing import Any

import click

from ledger.adapters.cli._common import FORMAT, _emit, _open, _runner, _stopped_by_sigterm
from ledger.projections.runner import LINGER_S


class _Seconds(click.FloatRange):
    """A number of seconds in a range, never nan: nan passes every comparison of the
    range check, and as a poll interval it made the follower spin a core."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if math.isnan(seconds):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        return seconds


@click.group()
def projections() -> None:
    """Read models: status, rebuild and follow."""


@projections.command("status")
@FORMAT
@click.pass_obj
def projections_status(store: str, fmt: str) -> None:
    """Show each read model's checkpoint and lag."""
    with _open(store) as books, closing(_runner(books)) as runner:
        lag = runner.lag()
        data = {
            name: {
                "position": runner.checkpoint(name),
                "lag_events": v.events,
                "lag_seconds": round(v.seconds, 3),
            }
            for name, v in lag.items()
        }
    human = "\n".join(
        f"{n}: position {d['position']}, {d['lag_events']} events behind" for n, d in data.items()
    )
    _emit(fmt, data, human)


@projections.command("rebuild")
@click.argument("name", type=click.Choice(["balances", "feed", "all"]), default="all")
@click.pass_obj
def projections_rebuild(store: str, name: str) -> None:
    """Rebuild a read model from the log and swap it in."""
    with _open(store) as books, closing(_runner(books)) as runner:
        for view in ("balances", "feed") if name == "all" else (name,):
            click.echo(f"{view}: rebuilt from {runner.rebuild(view)} events")


@projections.command("follow")
@click.option(
    "--poll",
    "poll_s",
    type=_Seconds(0.01, 60),
    default=0.2,
    show_default=True,
    help="Seconds between polls when the read models are up to date.",
)
@click.option(
    "--linger",
    "linger_s",
    type=_Seconds(0, 5),
    default=LINGER_S,
    show_default=True,
    help="Seconds to wait after a catch-up that found events, so that the next one "
    "takes what arrived meanwhile in one transaction (the read models' added lag).",
)
@click.pass_obj
def projections_follow(store: str, poll_s: float, linger_s: float) -> None:
    """Keep the read models up to date until stopped (SIGTERM or Ctrl-C): the worker
    a service runs beside its web processes."""
    with _open(store, create=True) as books:
        runner = _runner(books)
        stop = threading.Event()
        try:
            with _stopped_by_sigterm(stop):
                runner.follow(stop, poll_s=poll_s, linger_s=linger_s)
        except KeyboardInterrupt:
            stop.set()
        finally:
            runner.close()

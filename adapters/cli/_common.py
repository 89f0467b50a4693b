"""What the ``ledger`` commands share: the time parameter, the ``--format`` option
and output, opening the ledger a ``--store`` URL names, the read models' runner and
SIGTERM handling."""

from __future__ import annotations

import json
import re
import signal
import threading
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import click

from ledger.adapters.crypto import keyring_from_env
from ledger.adapters.opening import Ledger
from ledger.errors import StoreUnavailable
from ledger.projections import BalancesView, FeedView, ProjectionRunner


class Instant(click.ParamType):  # type: ignore[type-arg,unused-ignore]
    """A point in time: RFC 3339 with a zone (``2026-01-31T00:00:00Z``,
    ``2026-01-31T02:00:00+02:00``, at most 6 decimals of a second) or a date
    (``2026-01-31``: 00:00 UTC that day). A time without a zone is refused: it would
    name a different instant on every machine."""

    name = "instant"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        text = str(value).strip()
        date_only = _DATE.fullmatch(text) is not None
        if not date_only and _RFC3339.fullmatch(text) is None:
            self.fail(
                f"{value!r} is not a time: use RFC 3339 with a zone (2026-01-31T00:00:00Z, "
                "2026-01-31T02:00:00+02:00) or a date (2026-01-31, midnight UTC)",
                param,
                ctx,
            )
        try:
            when = datetime.fromisoformat(text if date_only else f"{text[:10]}T{text[11:].upper()}")
            return when.replace(tzinfo=UTC) if date_only else when.astimezone(UTC)
        except OverflowError:
            self.fail(f"{value!r} is out of range in UTC (years 1 to 9999)", param, ctx)
        except ValueError as e:  # a 13th month, a 25th hour
            self.fail(f"{value!r} is not a time: {e}", param, ctx)


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
INSTANT = Instant()


class FilePath(click.Path):
    """``click.Path`` that refuses an empty string: it names no file (``export ""``
    wrote its temporary copy of the books into the working directory and left it there,
    ``audit --report ""`` wrote no report and said nothing)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value == "":
            self.fail("an empty path names no file", param, ctx)
        return super().convert(value, param, ctx)


def _open(store: str, *, create: bool = False) -> Ledger:
    """The ledger at ``store``, with the keyring ``LEDGER_KEYS`` names (if any).

    Only the commands that write (``init``, ``demo``, ``import``, ``asset add``) and the
    follower (``projections follow``, which may start before the service's first
    write) may create a SQLite file: a read of a mistyped path must not answer from a new, empty
    ledger (an audit of nothing is clean)."""
    try:
        keyring = keyring_from_env()
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    path, query = _sqlite_file(store)
    if not create and path and "mode=memory" not in query and not Path(path).exists():
        raise StoreUnavailable(
            f"no ledger at {store}: {path} does not exist (ledger init creates one)"
        )
    return Ledger.open(store, keyring=keyring)


def _sqlite_file(store: str) -> tuple[str | None, str]:
    """The file a ``sqlite:///`` URL names (None for another store or ``:memory:``)
    and its SQLite parameters (``?mode=ro``; a ``file:`` URI's path decoded)."""
    if not store.startswith("sqlite:///"):
        return None, ""
    path, _, query = store[len("sqlite:///") :].partition("?")
    if path.startswith("file:"):
        path = unquote(path[len("file:") :])
    return (None if path in ("", ":memory:") else path), query


@contextmanager
def _stopped_by_sigterm(stop: threading.Event) -> Iterator[None]:
    """SIGTERM sets ``stop`` while the block runs; the handler before it is put back
    after (the CLI may run inside another program, e.g. its tests or a supervisor)."""
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _printable(text: str) -> str:
    """``text`` for a terminal: control and format characters (newlines, escape
    sequences, bidirectional overrides) shown escaped, so that a description can
    neither forge a line of a table nor reorder what follows it."""
    if text.isprintable():
        return text
    return "".join(
        ch
        if ch.isprintable() or unicodedata.category(ch) == "Zs"
        else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def _emit(fmt: str, data: Any, human: str) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if fmt == "json" else human)


FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(["human", "json"]),
    default="human",
    show_default=True,
    help="human: a table (amounts with Dr/Cr); json: signed amounts, debits positive.",
)


def _runner(books: Ledger) -> ProjectionRunner:
    return ProjectionRunner.for_ledger(books, [BalancesView(), FeedView()])

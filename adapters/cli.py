"""The ``ledger`` command line."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import click

from ledger.adapters.crypto import keyring_from_env
from ledger.adapters.demo import run_demo
from ledger.adapters.jsonl import export_lines, import_lines, lines_of
from ledger.adapters.logging import configure_logging
from ledger.adapters.opening import Ledger
from ledger.assets import plain
from ledger.errors import (
    InvalidCommand,
    LedgerError,
    StoreError,
    StoreUnavailable,
    UnknownAccount,
)
from ledger.projections import BalancesView, FeedView, ProjectionRunner, statement
from ledger.projections.audit import audit as run_audit
from ledger.projections.audit import diff_read_model, position_at
from ledger.projections.runner import LINGER_S

__all__ = ["main"]

DEFAULT_STORE = "sqlite:///ledger.db"


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


CONVENTIONS = """\b
Conventions of every command:
  amounts   exact decimal strings in the asset's decimals; in machine-readable
            output (--format json, export) signed: debits positive, credits
            negative; human tables show the figure with Dr or Cr
  times     out: RFC 3339 in UTC (2026-01-31T09:00:00+00:00); in: RFC 3339 with
            a zone, or a date (00:00 UTC that day); a time without a zone is
            refused
  periods   --as-of T includes what took effect at T; a statement covers
            [--from, --to): from included, to excluded
  output    data on stdout; errors on stderr, one line: "ledger: CODE: message"
  exit      0 done; 1 a ledger error, a refused or partial import, an
            unbalanced trial balance, audit findings, an I/O error, or a reader
            of stdout that went away (| head); 2 a usage error; 130
            interrupted (Ctrl-C)
"""


@click.group(epilog=CONVENTIONS)
@click.option(
    "--store",
    envvar="LEDGER_STORE",
    default=DEFAULT_STORE,
    show_default=True,
    help="Store URL: sqlite:///path or postgresql://user:pass@host/db (env LEDGER_STORE).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False),
    default="WARNING",
    show_default=True,
    help="Structured log level (JSON lines on stderr).",
)
@click.version_option(package_name="ledger-engine", prog_name="ledger")
@click.pass_context
def cli(ctx: click.Context, store: str, log_level: str) -> None:
    """An event-sourced double-entry ledger."""
    configure_logging(log_level.upper(), json=True)
    ctx.obj = store


@cli.command()
@click.pass_obj
def init(store: str) -> None:
    """Create the schema (safe to run again)."""
    with _open(store, create=True) as books:
        shown = books.store.url  # a PostgreSQL URL's password masked
    click.echo(f"initialised {shown}")


@cli.command()
@click.pass_obj
def demo(store: str) -> None:
    """Run a scripted day of payments, build the read models, audit, print the verdict."""
    with _open(store, create=True) as books:
        balanced = run_demo(books, sys.stdout)
        runner = _runner(books)
        projected = runner.catch_up()
        runner.close()
        result = run_audit(books.store)
    click.echo(f"read models: {projected} new events projected")
    click.echo(
        f"audit: {'CLEAN' if result.clean else 'FINDINGS'} - {result.events} events replayed, "
        f"{result.findings_total} findings"
    )
    if not balanced or not result.clean:
        raise SystemExit(1)


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


@cli.group()
def asset() -> None:
    """Declare user-defined assets."""


@asset.command("add")
@click.argument("code")
@click.option("--scale", type=click.IntRange(0, 18), required=True, help="Number of decimals.")
@click.pass_obj
def asset_add(store: str, code: str, scale: int) -> None:
    """Declare asset CODE with SCALE decimals (ISO 4217 currencies need none)."""
    with _open(store, create=True) as books:
        outcome = books.declare_asset(code, scale)
    click.echo(f"asset {code} scale {scale}" + (" (already declared)" if outcome.replayed else ""))


@cli.command()
@click.option("--until", "until", type=INSTANT, help="Audit writes recorded up to T.")
@click.option("--position", type=click.IntRange(min=0), help="Audit the log up to position N.")
@click.option(
    "--report", type=click.Path(dir_okay=False, writable=True), help="Write a JSON report."
)
@FORMAT
@click.pass_obj
def audit(
    store: str, until: datetime | None, position: int | None, report: str | None, fmt: str
) -> None:
    """Replay the log and check every invariant; exit 0 if clean, 1 with findings."""
    if until is not None and position is not None:
        raise click.UsageError("use either --until or --position, not both")
    with _open(store) as books:
        if until is not None:
            position = position_at(
                books.store, until if until.tzinfo else until.replace(tzinfo=UTC)
            )
        total = books.store.max_position() if position is None else position
        with click.progressbar(
            length=total, label="replaying", file=sys.stderr, hidden=fmt == "json" or total < 50_000
        ) as bar:
            result = run_audit(books.store, until_position=position, progress=bar.update)
        compared: dict[str, Any] = {"compared": False, "reason": "a partial audit"}
        if position is None:  # a full audit also diffs the live balances view
            runner = _runner(books)
            try:
                runner.catch_up(until=result.position)
                with runner.views.snapshot() as w:
                    live = {
                        name: (int(p), int(o), int(i))
                        for name, p, o, i in w.query(
                            "SELECT account, posted, pending_out, pending_in FROM rm_balances"
                        )
                    }
                diff_read_model(result, live)
                compared = {"compared": True, "reason": None}
            except StoreError as e:
                # A log the replay already found damaged may stop the read models (an
                # unreadable event): the findings and the report still come out.
                if result.clean:
                    raise
                click.echo(f"ledger: the balances read model was not compared: {e}", err=True)
                compared = {"compared": False, "reason": str(e)}
            finally:
                runner.close()
    data = {**result.to_json(), "read_model": compared}
    if report:
        Path(report).write_text(json.dumps(data, indent=2))
    lines = [
        f"{data['verdict'].upper()}: {result.events} events, {result.entries} entries, "
        f"{result.accounts} accounts, up to position {result.position}"
    ]
    for asset_code, sides in data["trial_balance"].items():
        lines.append(f"  {asset_code}: debits {sides['debits']}  credits {sides['credits']}")
    lines += [f"  position {f.position}: {f.code}: {f.message}" for f in result.findings]
    _emit(fmt, data, "\n".join(lines))
    if not result.clean:
        raise SystemExit(1)


@cli.group()
def projections() -> None:
    """Read models: status, rebuild and follow."""


def _runner(books: Ledger) -> ProjectionRunner:
    return ProjectionRunner.for_ledger(books, [BalancesView(), FeedView()])


@projections.command("status")
@FORMAT
@click.pass_obj
def projections_status(store: str, fmt: str) -> None:
    """Show each read model's checkpoint and lag."""
    with _open(store) as books:
        runner = _runner(books)
        lag = runner.lag()
        data = {
            name: {
                "position": runner.checkpoint(name),
                "lag_events": v.events,
                "lag_seconds": round(v.seconds, 3),
            }
            for name, v in lag.items()
        }
        runner.close()
    human = "\n".join(
        f"{n}: position {d['position']}, {d['lag_events']} events behind" for n, d in data.items()
    )
    _emit(fmt, data, human)


@projections.command("rebuild")
@click.argument("name", type=click.Choice(["balances", "feed", "all"]), default="all")
@click.pass_obj
def projections_rebuild(store: str, name: str) -> None:
    """Rebuild a read model from the log and swap it in."""
    with _open(store) as books:
        runner = _runner(books)
        for view in ("balances", "feed") if name == "all" else (name,):
            click.echo(f"{view}: rebuilt from {runner.rebuild(view)} events")
        runner.close()


@projections.command("follow")
@click.option(
    "--poll",
    "poll_s",
    type=click.FloatRange(0.01, 60),
    default=0.2,
    show_default=True,
    help="Seconds between polls when the read models are up to date.",
)
@click.option(
    "--linger",
    "linger_s",
    type=click.FloatRange(0, 5),
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


@cli.command()
@click.option(
    "--as-of", "as_of", type=INSTANT, help="Balances as of T (what took effect at T included)."
)
@click.option(
    "--by",
    type=click.Choice(["effective", "recorded"]),
    default="effective",
    show_default=True,
    help="With --as-of: by when entries took effect, or when they were recorded.",
)
@click.option("--account", "prefix", default="", help="Only accounts starting with PREFIX.")
@FORMAT
@click.pass_obj
def balances(store: str, as_of: datetime | None, by: str, prefix: str, fmt: str) -> None:
    """Posted balance per account, signed: debits positive, credits negative (read
    models are brought up to date first)."""
    if by != "effective" and as_of is None:
        raise click.UsageError("--by applies to --as-of; give --as-of T")
    with _open(store) as books:
        runner = _runner(books)
        runner.catch_up()
        with runner.views.snapshot() as w:
            names = [r[0] for r in w.query("SELECT account FROM rm_balances ORDER BY account")]
            rows = {}
            for name in (n for n in names if n.startswith(prefix)):
                row = (
                    BalancesView.balance(w, name)
                    if as_of is None
                    else BalancesView.balance_as_of(
                        w,
                        name,
                        as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC),
                        by="recorded" if by == "recorded" else "effective",
                    )
                )
                if row is not None:
                    rows[name] = {
                        "asset": row.asset,
                        "normal": row.normal,
                        "balance": plain(row.signed),
                    }
        runner.close()
    human = "\n".join(
        f"{n:<40} {d['asset']:<6} {_dr_cr(d['balance'])}  ({d['normal']}-normal)"
        for n, d in rows.items()
    )
    _emit(fmt, rows, human or "(no accounts)")


def _dr_cr(signed: str) -> str:
    """A signed amount (debits positive) for people: the figure and its side (none
    for zero, which is on neither)."""
    if not signed.strip("-0."):
        return f"{signed.lstrip('-'):>22}   "
    side = "Cr" if signed.startswith("-") else "Dr"
    return f"{signed.lstrip('-'):>22} {side}"


@cli.command("trial-balance")
@click.option(
    "--as-of", "as_of", type=INSTANT, help="Balances as of T (effective time, T included)."
)
@FORMAT
@click.pass_obj
def trial_balance(store: str, as_of: datetime | None, fmt: str) -> None:
    """Debit and credit balances of every account per asset, and their totals, which
    agree when the books balance (exit 1 and a line on stderr when they do not). In
    JSON each account also has its signed ``balance`` (debits positive) and each
    asset ``balanced``."""
    with _open(store) as books:
        runner = _runner(books)
        runner.catch_up()
        with runner.views.snapshot() as w:
            names = [r[0] for r in w.query("SELECT account FROM rm_balances ORDER BY account")]
            found = [
                BalancesView.balance(w, n)
                if as_of is None
                else BalancesView.balance_as_of(w, n, as_of)
                for n in names
            ]
        runner.close()
    per_asset: dict[str, dict[str, Any]] = {}
    for row in (r for r in found if r is not None):
        book = per_asset.setdefault(
            row.asset, {"accounts": [], "debits": Decimal(0), "credits": Decimal(0)}
        )
        signed = row.signed
        zero = signed.copy_abs() * 0  # 0 with the asset's decimals, unsigned
        debit = signed if signed > 0 else zero
        credit = signed.copy_abs() if signed < 0 else zero
        book["accounts"].append(
            {
                "account": row.account,
                "normal": row.normal,
                "balance": plain(signed),
                "debit": plain(debit),
                "credit": plain(credit),
            }
        )
        with localcontext(prec=200):
            book["debits"] += debit
            book["credits"] += credit
    data = {
        asset: {
            **book,
            "debits": plain(book["debits"]),
            "credits": plain(book["credits"]),
            "balanced": book["debits"] == book["credits"],
        }
        for asset, book in sorted(per_asset.items())
    }
    lines = []
    for asset, book in data.items():
        lines.append(f"{asset:<40} {'debit':>22} {'credit':>22}")
        lines += [
            f"  {a['account']:<38} {a['debit']:>22} {a['credit']:>22}" for a in book["accounts"]
        ]
        verdict = "" if book["balanced"] else "  UNBALANCED"
        lines.append(f"  {'total':<38} {book['debits']:>22} {book['credits']:>22}{verdict}")
    _emit(fmt, data, "\n".join(lines) or "(no accounts)")
    off = [asset for asset, book in data.items() if not book["balanced"]]
    if off:
        click.echo(
            f"ledger: unbalanced: debits and credits differ in {', '.join(off)} (run ledger audit)",
            err=True,
        )
        raise SystemExit(1)


@cli.command("statement")
@click.argument("account")
@click.option(
    "--from", "start", type=INSTANT, required=True, help="Start of the period (included)."
)
@click.option("--to", "end", type=INSTANT, required=True, help="End of the period (excluded).")
@FORMAT
@click.pass_obj
def statement_cmd(store: str, account: str, start: datetime, end: datetime, fmt: str) -> None:
    """Opening balance, lines with running balance, closing balance for the period
    [--from, --to), by effective time. Amounts signed: debits positive, credits
    negative (JSON), or with Dr/Cr (human). The output names the period it used."""
    if start > end:
        raise click.BadParameter(f"--from {start.isoformat()} is after --to {end.isoformat()}")
    with _open(store) as books:
        runner = _runner(books)
        runner.catch_up()
        with runner.views.snapshot() as w:
            st = statement(w, account, start, end)
            row = BalancesView.balance(w, account)
        runner.close()
    if st is None or row is None:
        raise UnknownAccount(f"account {account!r} is not in the read model")

    def signed(value: Decimal) -> str:  # debits positive, as in the import format
        return plain(value if row.normal == "debit" or not value else value.copy_negate())

    lines = [
        {
            "entry_id": ln.entry_id,
            "kind": ln.kind,
            "effective_at": ln.effective_at,
            "recorded_at": ln.recorded_at,
            "description": ln.description,
            "amount": signed(ln.amount),
            "running": signed(ln.running),
        }
        for ln in st.lines
    ]
    opening, closing = signed(st.opening), signed(st.closing)
    data = {
        "account": st.account,
        "asset": st.asset,
        "normal": row.normal,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "opening": opening,
        "closing": closing,
        "lines": lines,
    }
    human = "\n".join(
        [
            f"{account} ({st.asset}, {row.normal}-normal), "
            f"from {start.isoformat()} to {end.isoformat()} (excluded)",
            f"  opening {'':<10} {_dr_cr(opening)}",
            *(
                f"  {ln['effective_at'][:10]}  {_dr_cr(ln['amount'])}  "
                f"{_dr_cr(ln['running'])}  {_printable(ln['description'])}"
                for ln in lines
            ),
            f"  closing {'':<10} {_dr_cr(closing)}",
        ]
    )
    _emit(fmt, data, human)


@cli.command("import")
@click.argument("source", type=click.Path(allow_dash=True, dir_okay=False))
@click.option("--skip-invalid", is_flag=True, help="Apply the valid lines, report the rest.")
@click.option("--no-open-accounts", is_flag=True, help="Do not open unknown accounts.")
@click.option(
    "--default-normal",
    type=click.Choice(["debit", "credit"]),
    default="credit",
    show_default=True,
    help="Normal side of accounts the import opens.",
)
@click.option(
    "--normal",
    "normals",
    multiple=True,
    metavar="PREFIX=SIDE",
    help="Normal side by account prefix, e.g. --normal Assets=debit (longest prefix wins).",
)
@FORMAT
@click.pass_obj
def import_cmd(  # noqa: PLR0917 - click passes the options by position
    store: str,
    source: str,
    skip_invalid: bool,
    no_open_accounts: bool,
    default_normal: str,
    normals: tuple[str, ...],
    fmt: str,
) -> None:
    """Post entries from a JSON Lines FILE (or - for stdin); see the README for the format."""
    sides: dict[str, Any] = {}
    for item in normals:
        prefix, _, side = item.partition("=")
        if not prefix or side not in ("debit", "credit"):
            raise click.UsageError(f"--normal takes PREFIX=debit or PREFIX=credit, not {item!r}")
        sides[prefix] = side
    if source == "-":
        # Spool stdin's bytes to a temporary file: the import reads its input twice
        # (validate, then apply) and never holds it in memory. Decoded as UTF-8, as a
        # file is, whatever the terminal's encoding.
        spool = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115
        shutil.copyfileobj(sys.stdin.buffer, spool)

        def read() -> Any:
            spool.seek(0)
            return lines_of(spool)
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(errno.ENOENT, "no such file", source)

        def read() -> Any:
            # Bytes, split at \n alone as from stdin; each line decoded as UTF-8 by the
            # import, which names a line that is not.
            with path.open("rb") as f:
                yield from lines_of(f)

    with _open(store, create=True) as books:
        try:
            total = sum(1 for line in read() if line.strip())
            with click.progressbar(
                length=total,
                label="importing",
                file=sys.stderr,
                hidden=fmt == "json" or total < 10_000,
                show_pos=True,
            ) as bar:
                result = import_lines(
                    books,
                    read,
                    skip_invalid=skip_invalid,
                    open_accounts=not no_open_accounts,
                    default_normal="debit" if default_normal == "debit" else "credit",
                    normals=sides,
                    progress=bar.update,
                )
        except UnicodeDecodeError as e:
            raise InvalidCommand(f"{source} is not UTF-8 text: {e.reason}") from None
    errors = result.errors or []
    data_out = {
        "lines": result.lines,
        "applied": result.applied,
        "replayed": result.replayed,
        "rejected": result.rejected,
        "conflicts": result.conflicts,
        "invalid": result.invalid,
        "errors": [{"line": e.line or None, "message": e.message} for e in errors],
    }
    if fmt != "json":  # each refused line goes to stderr; the summary is data
        for refused in errors:
            where = f"line {refused.line}: " if refused.line else ""
            click.echo(f"ledger: {where}{_printable(refused.message)}", err=True)
    human = (
        f"{result.applied} applied, {result.replayed} already applied, "
        f"{result.rejected} rejected, {result.conflicts} conflicts, "
        f"{result.invalid} invalid of {result.lines} lines"
    )
    _emit(fmt, data_out, human)
    if result.invalid and not skip_invalid:
        click.echo(
            f"ledger: invalid_import: nothing applied: {result.invalid} invalid "
            f"line{'s' if result.invalid > 1 else ''} (--skip-invalid applies the others)",
            err=True,
        )
        raise SystemExit(1)
    # Lines skipped as invalid, rejected or conflicting: the file did not all apply.
    if result.invalid or result.rejected or result.conflicts:
        raise SystemExit(1)


@cli.command("export")
@click.argument("target", type=click.Path(allow_dash=True, dir_okay=False), default="-")
@click.pass_obj
def export_cmd(store: str, target: str) -> None:
    """Write every entry as JSON Lines (the import format) to FILE or stdout."""
    with _open(store) as books:
        if target == "-":
            out = sys.stdout.buffer
            for line in export_lines(books):
                out.write(line)
            out.flush()
        else:
            # Written beside the target and moved over it at the end: a failure midway
            # leaves no partial file under the target's name.
            path = Path(target)
            try:
                temporary = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed by the with below)
                    "wb", dir=path.parent, prefix=f".{path.name}.", delete=False
                )
            except OSError as e:
                raise OSError(e.errno, e.strerror, target) from None
            with temporary as f:
                try:
                    for line in export_lines(books):
                        f.write(line)
                except BaseException:
                    f.close()
                    os.unlink(f.name)
                    raise
            os.replace(f.name, path)


@cli.command("stream")
@click.option(
    "--kafka",
    "bootstrap",
    envvar="LEDGER_KAFKA_BOOTSTRAP",
    required=True,
    help="Kafka bootstrap servers, HOST:PORT[,HOST:PORT] (env LEDGER_KAFKA_BOOTSTRAP).",
)
@click.option("--topic", required=True, help="Topic to publish the events to.")
@click.option("--name", default=None, help="Checkpoint name (default: the topic).")
@click.option(
    "--partitions",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    help="Partitions when creating the topic (1 keeps log order).",
)
@click.option("--once", is_flag=True, help="Publish what is committed now, then exit.")
@click.pass_obj
def stream_cmd(
    store: str, *, bootstrap: str, topic: str, name: str | None, partitions: int, once: bool
) -> None:
    """Publish every event of the log to Kafka, resuming from a checkpoint."""
    try:
        from ledger.adapters.kafka_relay import KafkaRelay, ensure_topic  # noqa: PLC0415
    except ImportError:
        raise click.ClickException(
            "the kafka extra is not installed: pip install 'ledger-engine[kafka]'"
        ) from None
    from kafka.errors import KafkaError  # type: ignore[import-untyped]  # noqa: PLC0415

    with _open(store) as books:
        relay = KafkaRelay(books.store, bootstrap=bootstrap, topic=topic, name=name or topic)
        try:
            try:
                ensure_topic(bootstrap, topic, partitions)
                if once:
                    published = relay.catch_up()
                    click.echo(f"published {published} events; checkpoint {relay.checkpoint()}")
                    return
            except KafkaError as e:
                detail = str(e).removeprefix(f"{type(e).__name__}: ") or type(e).__name__
                raise StoreUnavailable(f"Kafka at {bootstrap}: {detail}") from None
            stop = threading.Event()
            try:
                with _stopped_by_sigterm(stop):
                    relay.run(stop)
            except KeyboardInterrupt:
                stop.set()
        finally:
            relay.close()


def main() -> None:
    """Entry point: typed ledger errors become one line on stderr and exit code 1."""
    for stream in (sys.stdout, sys.stderr):  # names and notes in any terminal encoding
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        cli.main(standalone_mode=False, prog_name="ledger")
    except click.exceptions.Exit as e:
        raise SystemExit(e.exit_code) from None
    except click.exceptions.NoArgsIsHelpError as e:  # bare "ledger": the help, as is
        click.echo(e.ctx.get_help(), err=True)
        raise SystemExit(2) from None
    except click.UsageError as e:  # one line, as every error (click's own is four)
        click.echo(f"ledger: usage: {e.format_message()} (see --help)", err=True)
        raise SystemExit(2) from None
    except click.ClickException as e:
        click.echo(f"ledger: {e.format_message()}", err=True)
        raise SystemExit(e.exit_code) from None
    except click.exceptions.Abort:
        click.echo("ledger: interrupted", err=True)
        raise SystemExit(130) from None
    except LedgerError as e:
        click.echo(f"ledger: {e.code}: {e.message}", err=True)
        raise SystemExit(1) from None
    except BrokenPipeError:  # the reader of stdout went away (| head): stop quietly,
        # with click's status for it (it handles the case during a command)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
    except OSError as e:  # a file or stream that cannot be read or written
        where = f" ({e.filename})" if e.filename else ""
        click.echo(f"ledger: io_error: {e.strerror or e}{where}", err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":  # python -m ledger.adapters.cli
    main()

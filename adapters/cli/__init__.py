"""The ``ledger`` command line: the root group, its commands assembled from the
modules beside this one, and :func:`main`, the entry point (``ledger`` and
``python -m ledger.adapters.cli``)."""

from __future__ import annotations

import os
import sys

import click

from ledger.adapters.cli._audit import audit
from ledger.adapters.cli._import_export import export_cmd, import_cmd
from ledger.adapters.cli._projections import projections
from ledger.adapters.cli._reports import balances, statement_cmd, trial_balance
from ledger.adapters.cli._setup import asset, demo, init
from ledger.adapters.cli._stream import stream_cmd
from ledger.adapters.logging import configure_logging
from ledger.errors import LedgerError

__all__ = ["main"]

DEFAULT_STORE = "sqlite:///ledger.db"


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


cli.add_command(init)
cli.add_command(demo)
cli.add_command(asset)
cli.add_command(audit)
cli.add_command(projections)
cli.add_command(balances)
cli.add_command(trial_balance)
cli.add_command(statement_cmd)
cli.add_command(import_cmd)
cli.add_command(export_cmd)
cli.add_command(stream_cmd)


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

"""The ``ledger`` command line."""

from __future__ import annotations

import sys

import click
from ledger.adapters.demo import run_demo
from ledger.adapters.logging import configure_logging

from ledger.errors import LedgerError
from ledger.facade import Ledger

__all__ = ["main"]

DEFAULT_STORE = "sqlite:///ledger.db"


@click.group()
@click.option(
    "--store",
    envvar="LEDGER_STORE",
    default=DEFAULT_STORE,
    show_default=True,
    help="Store URL: sqlite:///path or postgresql://user:pass@host/db (env LEDGER_STORE).",
)
@click.option("--log-level", default="WARNING", show_default=True, help="Structured log level.")
@click.pass_context
def cli(ctx: click.Context, store: str, log_level: str) -> None:
    """An event-sourced double-entry ledger."""
    configure_logging(log_level, json=True)
    ctx.obj = store


@cli.command()
@click.pass_obj
def init(store: str) -> None:
    """Create the schema (safe to run again)."""
    Ledger.open(store).close()
    click.echo(f"initialised {store}")


@cli.command()
@click.pass_obj
def demo(store: str) -> None:
    """Run a scripted day of payments and print the balances."""
    with Ledger.open(store) as books:
        balanced = run_demo(books, sys.stdout)
    if not balanced:
        raise SystemExit(1)


def main() -> None:
    """Entry point: typed ledger errors become one line on stderr and exit code 1."""
    try:
        cli.main(standalone_mode=False, prog_name="ledger")
    except click.exceptions.Exit as e:
        raise SystemExit(e.exit_code) from None
    except click.ClickException as e:
        e.show()
        raise SystemExit(2) from None
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        raise SystemExit(130) from None
    except LedgerError as e:
        click.echo(f"ledger: {e.code}: {e.message}", err=True)
        raise SystemExit(1) from None

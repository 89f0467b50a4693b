"""``ledger init``, ``ledger demo`` and ``ledger asset add``: the commands that create."""

from __future__ import annotations

import sys
from contextlib import closing

import click

from ledger.adapters.cli._common import _open, _runner
from ledger.adapters.demo import run_demo
from ledger.projections.audit import audit as run_audit


@click.command()
@click.pass_obj
def init(store: str) -> None:
    """Create the schema (safe to run again)."""
    with _open(store, create=True) as books:
        shown = books.store.url  # a PostgreSQL URL's password masked
    click.echo(f"initialised {shown}")


@click.command()
@click.pass_obj
def demo(store: str) -> None:
    """Run a scripted day of payments, build the read models, audit, print the verdict."""
    with _open(store, create=True) as books:
        balanced = run_demo(books, sys.stdout)
        with closing(_runner(books)) as runner:
            projected = runner.catch_up()
        result = run_audit(books.store)
    click.echo(f"read models: {projected} new events projected")
    click.echo(
        f"audit: {'CLEAN' if result.clean else 'FINDINGS'} - {result.events} events replayed, "
        f"{result.findings_total} findings"
    )
    if not balanced or not result.clean:
        raise SystemExit(1)


@click.group()
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

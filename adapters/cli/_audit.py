"""``ledger audit``: the replay of the log, its verdict and report."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ledger.adapters.cli._common import FORMAT, INSTANT, FilePath, _emit, _open, _runner
from ledger.errors import StoreError
from ledger.projections.audit import audit as run_audit
from ledger.projections.audit import diff_read_model, position_at


@click.command()
@click.option("--until", "until", type=INSTANT, help="Audit writes recorded up to T.")
@click.option("--position", type=click.IntRange(min=0), help="Audit the log up to position N.")
@click.option("--report", type=FilePath(dir_okay=False, writable=True), help="Write a JSON report.")
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
        end = books.store.max_position()
        total = end if position is None else min(position, end)
        with click.progressbar(
            length=total, label="replaying", file=sys.stderr, hidden=fmt == "json" or total < 50_000
        ) as bar:
            result = run_audit(books.store, until_position=position, progress=bar.update)
        compared: dict[str, Any] = {"compared": False, "reason": "a partial audit"}
        # A bounded audit (--position, --until) replays only, even past the end of the log:
        # it needs no key on an encrypted store (the read models copy notes).
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

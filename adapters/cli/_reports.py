"""``ledger balances``, ``ledger trial-balance`` and ``ledger statement``: reports
from the read models."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from typing import Any

import click

from ledger.adapters.cli._common import FORMAT, INSTANT, _emit, _open, _printable, _runner
from ledger.assets import plain
from ledger.errors import UnknownAccount
from ledger.projections import BalancesView, statement


@click.command()
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
@click.option(
    "--account", "prefix", default="", metavar="PREFIX", help="Only accounts starting with PREFIX."
)
@FORMAT
@click.pass_obj
def balances(store: str, as_of: datetime | None, by: str, prefix: str, fmt: str) -> None:
    """Posted balance per account, signed: debits positive, credits negative (read
    models are brought up to date first)."""
    if by != "effective" and as_of is None:
        raise click.UsageError("--by applies to --as-of; give --as-of T")
    with _open(store) as books, contextlib.closing(_runner(books)) as runner:
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


@click.command("trial-balance")
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
    with _open(store) as books, contextlib.closing(_runner(books)) as runner:
        runner.catch_up()
        with runner.views.snapshot() as w:
            names = [r[0] for r in w.query("SELECT account FROM rm_balances ORDER BY account")]
            found = [
                BalancesView.balance(w, n)
                if as_of is None
                else BalancesView.balance_as_of(w, n, as_of)
                for n in names
            ]
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


@click.command("statement")
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
    with _open(store) as books, contextlib.closing(_runner(books)) as runner:
        runner.catch_up()
        with runner.views.snapshot() as w:
            st = statement(w, account, start, end)
            row = BalancesView.balance(w, account)
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

"""``ledger import`` and ``ledger export``: entries as JSON Lines."""

from __future__ import annotations

import errno
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from ledger.adapters.cli._common import FORMAT, FilePath, _emit, _open, _printable
from ledger.adapters.jsonl import export_lines, import_lines, lines_of
from ledger.errors import InvalidCommand


@click.command("import")
@click.argument("source", type=FilePath(allow_dash=True, dir_okay=False), metavar="FILE")
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
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, "no such file", source)
        if not path.is_file():  # a pipe or device (<(zcat ...)) cannot be read twice
            raise OSError(errno.EINVAL, "not a regular file: use - to read a pipe", source)

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


@click.command("export")
@click.argument(
    "target", type=FilePath(allow_dash=True, dir_okay=False), default="-", metavar="[FILE]"
)
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
            try:
                os.replace(f.name, path)
            except OSError as e:  # the books stay nowhere but where they were asked for
                os.unlink(f.name)
                raise OSError(e.errno, e.strerror, target) from None

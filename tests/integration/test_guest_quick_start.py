"""The quick start in ``ledger``'s own docstring (what ``help(ledger)`` shows) runs,
and prints what its comment says."""

from __future__ import annotations

import contextlib
import io
import re
import textwrap
from pathlib import Path

import pytest

import ledger


def test_the_package_docstring_quick_start_prints_what_it_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = ledger.__doc__ or ""
    code = textwrap.dedent(doc.split("::", 1)[1]).strip()
    expected = re.findall(r"print\(.*\)\s+# (.+)", code)
    assert expected
    monkeypatch.chdir(tmp_path)  # its sqlite:///books.db
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "ledger.__doc__", "exec"), {})
    assert out.getvalue().splitlines() == expected

"""An interrupted ``ledger import`` (Ctrl-C) exits 130 with one line on stderr and
nothing applied when interrupted before the file was read, and ``ledger --help``
documents that exit code with the others."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from tests.integration.test_cli import LEDGER, ledger

LINE = (
    '{"key":"i1","legs":[{"account":"a","amount":"1.00","currency":"USD"},'
    '{"account":"b","amount":"-1.00","currency":"USD"}]}\n'
)


def test_an_interrupted_import_exits_130_and_help_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/books.db"
    with subprocess.Popen(
        [*LEDGER, "--store", url, "import", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdin is not None
        proc.stdin.write(LINE.encode())
        proc.stdin.flush()
        time.sleep(2)  # the import is waiting for the rest of stdin
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert out == b""
    # One line in the errors' form (after the blank line click writes to close the
    # terminal's ^C echo).
    assert err.decode().strip().splitlines() == ["ledger: interrupted"], err
    assert ledger(url, "export").stdout == ""  # the line read was not applied
    shown = ledger(url, "--help").stdout
    assert "130 interrupted" in " ".join(shown.split())

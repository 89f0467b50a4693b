"""The ``ledger`` CLI run inside another program (its tests, a supervisor that calls
``main``): the SIGTERM handler it installs for ``projections follow`` and ``stream``
is the host's again once the command ends."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from click.testing import CliRunner

from ledger import Ledger
from ledger.adapters.cli import cli


def test_follow_puts_the_hosts_sigterm_handler_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    Ledger.open(url).close()
    seen: list[int] = []

    def host(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)

    previous = signal.signal(signal.SIGTERM, host)
    logger = logging.getLogger("ledger")  # the CLI configures it: put back for the next tests
    handlers, level = list(logger.handlers), logger.level
    try:
        timer = threading.Timer(1.0, lambda: signal.raise_signal(signal.SIGTERM))
        timer.start()
        result = CliRunner().invoke(cli, ["--store", url, "projections", "follow"])
        timer.join()
        assert result.exit_code == 0, result.output
        assert seen == []  # the command's handler took that SIGTERM and stopped
        assert signal.getsignal(signal.SIGTERM) is host
    finally:
        signal.signal(signal.SIGTERM, previous)
        logger.handlers[:], logger.level = handlers, level

"""Log output for the ledger's own programs (the CLI, the example service).

The library itself only logs through the standard ``logging`` module under the
``ledger`` logger (see :mod:`ledger.logs`) and prints nothing unless its host sets
logging up. :func:`configure_logging` is that set-up for the ledger's programs: the
``ledger`` records go to stderr (never stdout, which carries data), as JSON lines or as
readable lines, with the ids a person needs to follow a payment (``entry_id``,
``idempotency_key``, ``accounts``, ``status``, ``code``); never amounts,
descriptions, metadata or notes.
"""

from __future__ import annotations

import json as json_module
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = ["JsonLinesFormatter", "configure_logging"]

_HANDLER_NAME = "ledger-program-output"


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record: time (RFC 3339, UTC), level, logger, event, fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, "ledger", None) or {"event": record.msg})
        body = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            **fields,
        }
        return json_module.dumps(body, default=str)


def configure_logging(
    level: str = "INFO", *, json: bool = True, stream: TextIO | None = None
) -> logging.Handler:
    """Send the ``ledger`` logger's records at ``level`` and above to ``stream``
    (stderr) as JSON lines (or readable lines); returns the handler it added. An
    unknown ``level`` raises ValueError and changes nothing."""
    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):  # getLevelName answers "Level X" for a name it lacks
        raise ValueError(
            f"unknown log level {level!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL"
        )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonLinesFormatter() if json else logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    )
    logger = logging.getLogger("ledger")
    logger.addHandler(handler)
    logger.setLevel(number)
    return handler

"""The ledger's loggers: structlog-shaped calls, delivered through the standard
``logging`` module under the ``ledger`` logger hierarchy.

A library is a guest in its host's process: it prints nothing of its own. The
``ledger`` logger has only a ``NullHandler``; the application decides what is shown
and where, with the standard tools (``logging.basicConfig(level="INFO")``,
``logging.getLogger("ledger").setLevel(...)``, its own handlers, or structlog's
``ProcessorFormatter``). Nothing here calls ``structlog.configure``.

Each record's message is the event name followed by its fields (``ledger.write
idempotency_key='pay-1' status='applied' ...``), and each field is also an attribute
of the record (``record.idempotency_key``), with all of them in ``record.ledger``.
Records carry ids (entry, key, accounts), never amounts, descriptions or metadata.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ["get_logger"]

logging.getLogger("ledger").addHandler(logging.NullHandler())

#: LogRecord attributes a field must not overwrite.
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _to_record(logger: Any, method: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    """structlog's last step: the stdlib call's message and ``extra``."""
    name = event.pop("event")
    fields = dict(event)
    text = " ".join([str(name), *(f"{k}={v!r}" for k, v in fields.items())])
    extra = {k: v for k, v in fields.items() if k not in _RESERVED}
    extra["ledger"] = {"event": name, **fields}
    return {"msg": text, "extra": extra}


def get_logger(name: str = "ledger") -> Any:
    """A structlog logger writing to the stdlib logger ``name`` (cheap when its level
    is disabled: the level is checked first)."""
    return structlog.wrap_logger(
        logging.getLogger(name),
        processors=[structlog.stdlib.filter_by_level, _to_record],
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
        cache_logger_on_first_use=True,
    )

"""structlog setup for services and the CLI.

The ledger logs through ``structlog.get_logger("ledger")`` with the ids a person needs
to follow a payment (``entry_id``, ``idempotency_key``, ``accounts``, ``status``,
``code``); it never logs amounts, descriptions, metadata or notes.
"""

from __future__ import annotations

import logging
import sys

import structlog

__all__ = ["configure_logging"]


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    """Log ledger events as JSON lines (or readable lines) to stderr at ``level``."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )

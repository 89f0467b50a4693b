"""The programs' log set-up (``configure_logging``) changes nothing when it refuses its
level: it used to attach its stderr handler first, then fail on the unknown level
(``ValueError: Unknown level: 'Level VERBOSE'``), leaving the handler behind."""

from __future__ import annotations

import io
import logging

import pytest

from ledger.adapters.logging import configure_logging


@pytest.mark.parametrize("level", ["verbose", "", "Level 5"])
def test_an_unknown_level_is_refused_and_adds_no_handler(level: str) -> None:
    logger = logging.getLogger("ledger")
    handlers, before = list(logger.handlers), logger.level
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging(level, stream=io.StringIO())
    assert logger.handlers == handlers and logger.level == before


def test_a_known_level_in_any_case_is_set() -> None:
    logger = logging.getLogger("ledger")
    handler = configure_logging("warning", stream=io.StringIO())
    try:
        assert logger.level == logging.WARNING and handler in logger.handlers
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)

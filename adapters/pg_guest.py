"""eventsourcing's PostgreSQL module, imported without touching the host's logging.

At import, ``eventsourcing.postgres`` sets the ``psycopg`` and ``psycopg.pool``
loggers to ERROR, for the whole process; the ledger is a guest there, so the levels
the host had are put back.
"""

from __future__ import annotations

import logging

_LOGGERS = ("psycopg", "psycopg.pool")
_levels = {name: logging.getLogger(name).level for name in _LOGGERS}
try:
    from eventsourcing.postgres import (
        ConnectionPool,
        PostgresApplicationRecorder,
        PostgresDatastore,
    )
finally:
    for _name, _level in _levels.items():
        logging.getLogger(_name).setLevel(_level)

__all__ = ["ConnectionPool", "PostgresApplicationRecorder", "PostgresDatastore"]

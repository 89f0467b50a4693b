"""Open a store from a URL: ``sqlite:///path``, ``sqlite:///:memory:`` or ``postgresql://...``."""

from __future__ import annotations

import re
import uuid
from urllib.parse import quote

from ledger.errors import StoreError
from ledger.store import EventStore

__all__ = ["open_store"]

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]{0,31}):")


def open_store(url: str, *, require_durable: bool = True, pool_size: int = 2) -> EventStore:
    """The event store named by ``url`` (schema not created; see ``create_schema``).

    * ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` - a file, WAL mode;
    * ``sqlite:///path.db?mode=ro`` - with SQLite's URI parameters (``mode``,
      ``immutable``, ``vfs``...), given to SQLite as ``file:path.db?mode=ro`` (the
      path is taken as written, as without parameters);
    * ``sqlite:///file:path.db?mode=ro`` - an SQLite URI, given to SQLite as written;
    * ``sqlite:///:memory:`` - a private in-memory database (tests, examples);
    * ``postgresql://user:password@host:5432/dbname`` - PostgreSQL via psycopg 3.
    """
    if url.startswith("sqlite:///"):
        from ledger.adapters.sqlite_store import SQLiteEventStore  # noqa: PLC0415 - load drivers on demand

        path = url[len("sqlite:///") :]
        if not path:
            raise StoreError("sqlite URL needs a path: sqlite:///ledger.db")
        if path == ":memory:":
            path = f"file:ledger-{uuid.uuid4().hex}?mode=memory&cache=shared"
        elif "?" in path and not path.startswith("file:"):
            # SQLite reads parameters only from a URI: else they became part of the
            # file's name (a new "books.db?mode=ro", written to) and were ignored.
            name, _, parameters = path.partition("?")
            path = f"file:{quote(name, safe='/')}?{parameters}"
        return SQLiteEventStore(url, path)
    if url.startswith(("postgresql://", "postgres://")):
        from ledger.adapters.postgres_store import PostgresEventStore  # noqa: PLC0415 - load drivers on demand

        return PostgresEventStore(url, pool_size=pool_size, require_durable=require_durable)
    # Only the scheme is shown: the rest may hold a password (a libpq keyword string).
    scheme = _SCHEME.match(url)
    if scheme is None:
        raise StoreError("store URL has no scheme: use sqlite:///path or postgresql://...")
    if scheme.group(1) == "sqlite":  # a supported scheme, written with too few slashes
        raise StoreError(
            "sqlite URL needs three slashes before the path: sqlite:///relative/path.db "
            "or sqlite:////absolute/path.db"
        )
    raise StoreError(
        f"unsupported store URL scheme {scheme.group(1)!r}: use sqlite:///path or postgresql://..."
    )

"""PostgreSQL connection strings: parsed by libpq, shown without their password.

libpq (through psycopg's ``conninfo_to_dict``) is the one parser: ``urllib`` splits a
URL whose password holds ``#``, ``?`` or ``/`` elsewhere than libpq does. A string
is shown (in errors, ``repr`` and ``store.url``) with every form of its password
hidden: the value libpq parsed, percent-encoded, and as written, and what a reader
would take for the password where libpq reads it otherwise (``user:pw/x@host``);
the same forms are hidden in the reasons libpq and the server give.

The event store's settings are the parameters a string gives (:func:`store_settings`,
:func:`parse_postgres_url`), which must name a database.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict

from ledger.errors import StoreError

__all__ = ["Conninfo", "parse_conninfo", "parse_postgres_url", "store_settings"]

_HIDDEN = "***"
#: The shortest password hidden by its text (shorter ones by their position only).
_SECRET_MIN = 4
#: The userinfo as libpq reads it: up to the first ``@`` or ``/``.
_LIBPQ_USERINFO = re.compile(r"^([a-z]+://[^:@/]*:)([^@/]*)(@)", re.IGNORECASE)
#: What a reader takes for the password: up to the last ``@``.
_READER_USERINFO = re.compile(r"^([a-z]+://[^:@/?#]*:)(.*)(@)", re.IGNORECASE | re.DOTALL)
_QUERY_PASSWORD = re.compile(r"([?&]password=)([^&#]*)", re.IGNORECASE)
_KEYWORD_PASSWORD = re.compile(r"((?:^|\s)password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)")
#: A token libpq quotes in a reason, but the name of a query parameter (not a secret).
_QUOTED = re.compile(r'(?<!invalid URI query parameter: )"[^"]*"|"[^"]*[^"A-Za-z_][^"]*"')


class Conninfo:
    """A connection string's libpq parameters and its redacted form (:attr:`shown`)."""

    def __init__(self, url: str, params: Mapping[str, Any], secrets: Iterable[str]) -> None:
        self.params = dict(params)
        # Hidden wherever they appear, when long enough to be found only where the
        # password is: a shorter one is also a digit of the port or a letter of the host,
        # and hiding it everywhere would garble the text and, by the pattern of what was
        # hidden, tell it (the userinfo and password fields are hidden by position).
        self._secrets = sorted({s for s in secrets if len(s) >= _SECRET_MIN}, key=len, reverse=True)
        self.shown = self.redact(_hide_fields(url))

    def redact(self, text: str) -> str:
        """``text`` with every form of the password hidden."""
        for secret in self._secrets:
            text = text.replace(secret, _HIDDEN)
        return text


def _hide_fields(url: str) -> str:
    for pattern in (_LIBPQ_USERINFO, _READER_USERINFO):
        hidden, found = pattern.subn(rf"\1{_HIDDEN}\3", url, count=1)
        if found:
            url = hidden
            break
    url = _QUERY_PASSWORD.sub(rf"\1{_HIDDEN}", url)
    return _KEYWORD_PASSWORD.sub(rf"\1{_HIDDEN}", url)


def _written_secrets(url: str) -> list[str]:
    """The password as written in ``url``, however a parser would read it."""
    found: list[str] = []
    libpq = _LIBPQ_USERINFO.match(url)
    reader = _READER_USERINFO.match(url)
    for match in (libpq, reader):
        if match is not None:
            found.append(match.group(2))
    if libpq is None and reader is not None:
        # libpq read the pieces as host, port, database...: hide each.
        found.extend(p for p in re.split(r"[/?#@:]", reader.group(2)) if len(p) > 3)
    found.extend(m.group(2) for m in _QUERY_PASSWORD.finditer(url))
    for m in _KEYWORD_PASSWORD.finditer(url):
        found.extend((m.group(2), m.group(2).strip("'")))
    return found


def parse_conninfo(url: str) -> Conninfo:
    """Parse ``url`` with libpq; a string libpq refuses raises
    :class:`~ledger.errors.StoreError` that does not echo it."""
    written = _written_secrets(url)
    try:
        params: dict[str, Any] = conninfo_to_dict(url)
    except psycopg.Error as e:
        info = Conninfo(url, {}, written)
        reason = info.redact(" ".join(str(e).split()))
        # libpq quotes pieces of the string in its reasons: only a parameter's name stays.
        reason = _QUOTED.sub(f'"{_HIDDEN}"', reason)
        raise StoreError(f"PostgreSQL URL cannot be parsed: {reason}") from None
    password = str(params.get("password") or "")
    return Conninfo(url, params, [*written, password, quote(password, safe=""), quote(password)])


def parse_postgres_url(url: str) -> dict[str, Any]:
    """Connection settings from a ``postgresql://`` URL (or a libpq keyword string),
    parsed by libpq itself (through psycopg): every parameter is kept, an unknown one
    is refused with :class:`~ledger.errors.StoreError`."""
    return store_settings(parse_conninfo(url))


def store_settings(info: Conninfo) -> dict[str, Any]:
    """The event store's connection settings: the parameters ``info`` gives, which
    must name a database (else :class:`~ledger.errors.StoreError`)."""
    params = dict(info.params)  # only what the URL gives: libpq fills in the rest
    if not params.get("dbname"):
        raise StoreError(f"PostgreSQL URL {info.shown} must name a database")
    return params

"""Sealing personal fields: which sealer is in use, for the work at hand.

Events keep amounts, accounts, keys and times readable; their personal fields
(descriptions, notes, metadata, reasons) are sealed into one value when a
:class:`Sealer` is in use (``"sealed": "<key id>:<ciphertext>"``), and read models
seal the text they copy. The sealer belongs to the object doing the work (a
``Ledger``, a projection runner, a read-model store, a Kafka projector), never to
the process: each of them puts its own in use for the work it does, in a context
variable (:func:`sealing`), so two ledgers with different keyrings can share a
process, its threads and its event loops. Outside any of them no sealer is in use:
new data is written plain and sealed data cannot be opened.

The domain knows only the :class:`Sealer` interface; the AES-GCM keyring that
implements it is :class:`ledger.adapters.crypto.Keyring`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

import orjson

from ledger.errors import DecryptionError

__all__ = [
    "SEALED",
    "Sealer",
    "in_use",
    "open_body",
    "open_text",
    "seal_body",
    "seal_text",
    "sealing",
]

#: The event field that holds the sealed personal fields.
SEALED = "sealed"
_TEXT_PREFIX = "sealed:"


class Sealer(Protocol):
    """Seals bytes into text and opens what it sealed (see ledger.adapters.crypto.Keyring)."""

    def seal(self, plaintext: bytes) -> str:
        """``<key id>:<ciphertext>``."""

    def open(self, sealed: str) -> bytes:
        """The plaintext of a sealed value; DecryptionError if it does not open."""


_in_use: ContextVar[Sealer | None] = ContextVar("ledger_sealer", default=None)


@contextmanager
def sealing(sealer: Sealer | None) -> Iterator[None]:
    """Use ``sealer`` (None: none) for the work done inside the block, in this thread
    or task (and in threads started from it with ``asyncio.to_thread``)."""
    token = _in_use.set(sealer)
    try:
        yield
    finally:
        _in_use.reset(token)


def in_use() -> Sealer | None:
    """The sealer in use here, if any."""
    return _in_use.get()


def seal_body(body: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """Move ``fields`` of an event body into its seal (unchanged without a sealer)."""
    sealer = _in_use.get()
    if sealer is None:
        return body
    personal = {name: body[name] for name in fields if name in body}
    sealed = dict(body)
    for name, value in personal.items():
        sealed[name] = "" if isinstance(value, str) else {}
    sealed[SEALED] = sealer.seal(orjson.dumps(personal))
    return sealed


def open_body(body: dict[str, Any]) -> dict[str, Any]:
    """Restore the sealed fields of an event body (unchanged if it has none)."""
    sealed = body.get(SEALED)
    if sealed is None:
        return body
    sealer = _in_use.get()
    if sealer is None:
        raise DecryptionError("this event is encrypted and no keyring is configured")
    opened = dict(body)
    del opened[SEALED]
    opened.update(orjson.loads(sealer.open(sealed)))
    return opened


def seal_text(text: str) -> str:
    """A read model's copy of personal text (plain without a sealer)."""
    sealer = _in_use.get()
    if sealer is None or not text:
        return text
    return _TEXT_PREFIX + sealer.seal(text.encode())


def open_text(text: str) -> str:
    """The text :func:`seal_text` stored."""
    if not text.startswith(_TEXT_PREFIX):
        return text
    sealer = _in_use.get()
    if sealer is None:
        raise DecryptionError("this read model is encrypted and no keyring is configured")
    return sealer.open(text[len(_TEXT_PREFIX) :]).decode()

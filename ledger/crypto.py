"""Encryption at rest of personal data: descriptions, notes and metadata.

With a :class:`Keyring` configured, the personal fields of every new event
(``description`` and ``metadata`` of entries, ``metadata`` of account openings) are
sealed into one AES-GCM ciphertext (the eventsourcing library's ``AESCipher`` on the
``cryptography`` package) stored in the event as ``"sealed": "<key id>:<base64>"``,
and the read models seal the text they copy (feed notes, statement descriptions).
Amounts, accounts, keys and times stay readable, so the audit, projections and the
write path work unchanged; reading an event opens its seal with the key named in it.

Key rotation: add a new key and make it current (``Keyring({"k2": new, "k1": old},
current="k2")``); new events use ``k2``, old events stay readable with ``k1``. A key
may only be retired once no event sealed with it is needed (events are never
rewritten). Configure the keyring once per process, with :func:`configure` (done by
``Ledger.open(url, keyring=...)``) or the environment variable ``LEDGER_KEYS`` =
``"k2:<base64 key>,k1:<base64 key>"`` (first = current).
"""

from __future__ import annotations

import os
from base64 import b64decode, b64encode
from collections.abc import Mapping
from typing import Any

import orjson

from ledger.errors import StoreError

__all__ = [
    "SEALED",
    "DecryptionError",
    "Keyring",
    "configure",
    "current",
    "new_key",
    "open_body",
    "open_text",
    "seal_body",
    "seal_text",
]

#: The event field that holds the sealed personal fields.
SEALED = "sealed"
_TEXT_PREFIX = "sealed:"


class DecryptionError(StoreError):
    """A sealed value cannot be opened: its key is not configured, or it was altered."""

    code = "decryption_error"


def new_key() -> str:
    """A new random 256-bit key, base64-encoded (keep it in your secret store)."""
    return b64encode(os.urandom(32)).decode()


class Keyring:
    """AES-GCM keys by id; ``current`` seals new data, every key opens old data."""

    def __init__(self, keys: Mapping[str, str], current: str) -> None:
        from eventsourcing.cryptography import AESCipher  # noqa: PLC0415 - optional extra
        from eventsourcing.utils import Environment  # noqa: PLC0415

        if current not in keys:
            raise ValueError(f"current key {current!r} is not in the keyring")
        for key_id in keys:
            if not key_id or ":" in key_id or "," in key_id:
                raise ValueError(f"key id {key_id!r} must be non-empty, without ':' or ','")
        self.current = current
        self._ciphers = {
            key_id: AESCipher(Environment(env={AESCipher.CIPHER_KEY: key}))
            for key_id, key in keys.items()
        }

    @classmethod
    def from_env(cls, value: str) -> Keyring:
        """Parse ``"id:base64,id:base64"`` (the first is current)."""
        pairs = [item.split(":", 1) for item in value.split(",") if item.strip()]
        if not pairs or any(len(p) != 2 for p in pairs):
            raise ValueError("LEDGER_KEYS must look like 'k2:<base64>,k1:<base64>'")
        return cls({k.strip(): v.strip() for k, v in pairs}, current=pairs[0][0].strip())

    def seal(self, plaintext: bytes) -> str:
        """``<key id>:<base64 ciphertext>`` under the current key."""
        ciphertext = self._ciphers[self.current].encrypt(plaintext)
        return f"{self.current}:{b64encode(ciphertext).decode()}"

    def open(self, sealed: str) -> bytes:
        """The plaintext of a value made by :meth:`seal` with any key of the ring."""
        key_id, _, data = sealed.partition(":")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise DecryptionError(f"data sealed with key {key_id!r}, which is not configured")
        try:
            return bytes(cipher.decrypt(b64decode(data)))
        except ValueError as e:
            raise DecryptionError(f"sealed data does not open with key {key_id!r}: {e}") from e


_keyring: Keyring | None = None
_from_env = os.environ.get("LEDGER_KEYS")
if _from_env:
    _keyring = Keyring.from_env(_from_env)


def configure(keyring: Keyring | None) -> None:
    """Use ``keyring`` for this process from now on (None: write plain data; sealed
    data can then no longer be read)."""
    global _keyring  # noqa: PLW0603 - one keyring per process, like its secret store
    _keyring = keyring


def current() -> Keyring | None:
    """The configured keyring, if any."""
    return _keyring


def seal_body(body: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """Move ``fields`` of an event body into its seal (no-op without a keyring)."""
    if _keyring is None:
        return body
    personal = {name: body[name] for name in fields if name in body}
    sealed = dict(body)
    for name, value in personal.items():
        sealed[name] = "" if isinstance(value, str) else {}
    sealed[SEALED] = _keyring.seal(orjson.dumps(personal))
    return sealed


def open_body(body: dict[str, Any]) -> dict[str, Any]:
    """Restore the sealed fields of an event body (unchanged if it has none)."""
    sealed = body.get(SEALED)
    if sealed is None:
        return body
    if _keyring is None:
        raise DecryptionError("this event is encrypted and no keyring is configured")
    opened = dict(body)
    del opened[SEALED]
    opened.update(orjson.loads(_keyring.open(sealed)))
    return opened


def seal_text(text: str) -> str:
    """A read model's copy of personal text (plain without a keyring)."""
    if _keyring is None or not text:
        return text
    return _TEXT_PREFIX + _keyring.seal(text.encode())


def open_text(text: str) -> str:
    """The text :func:`seal_text` stored."""
    if not text.startswith(_TEXT_PREFIX):
        return text
    if _keyring is None:
        raise DecryptionError("this read model is encrypted and no keyring is configured")
    return _keyring.open(text[len(_TEXT_PREFIX) :]).decode()

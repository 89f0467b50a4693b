"""Encryption at rest of personal data: descriptions, notes and metadata.

A :class:`Keyring` is the AES-GCM :class:`~ledger.sealing.Sealer` (the eventsourcing
library's ``AESCipher`` on the ``cryptography`` package). Give one to the object that
does the work: ``Ledger.open(url, keyring=...)`` (the ledger's projection runners and
read-model connections take it from there: ``books.open_views()``), or to a
read-model store directly: ``open_view_store(store, sealer=...)``, which a
``KafkaProjector`` on it uses. The personal fields of every new event
(``description`` and ``metadata`` of entries, ``metadata`` of account openings,
``reason`` of account changes) are then sealed into one ciphertext stored in the
event as ``"sealed": "<key id>:<base64>"``, and the read models seal the text they copy
(feed notes, statement descriptions). Amounts, accounts, keys and times stay readable,
so the audit needs no key at all; reading an event opens its seal with the key named
in it.

Key rotation: add a new key and make it current (``Keyring({"k2": new, "k1": old},
current="k2")``); new events use ``k2``, old events stay readable with ``k1``. A key
may only be retired once no event sealed with it is needed (events are never
rewritten). The keyring belongs to the ledger that was given it, never to the process:
two ledgers with different keyrings can share one. The environment variable
``LEDGER_KEYS`` = ``"k2:<base64 key>,k1:<base64 key>"`` (first = current) is read only
when asked, by :func:`keyring_from_env` (the CLI does).

A malformed keyring (an unknown current key, a bad key id, a key that is not base64
of 16, 24 or 32 bytes, an id given twice in ``LEDGER_KEYS``) raises
:class:`KeyringError`, a ValueError that names the key id and never the key.
"""

from __future__ import annotations

import binascii
import os
from base64 import b64decode, b64encode
from collections.abc import Mapping

from ledger.errors import DecryptionError

__all__ = ["DecryptionError", "Keyring", "KeyringError", "keyring_from_env", "new_key"]

#: The AES key sizes, in bytes (AES-128, AES-192, AES-256; :func:`new_key` makes 32).
KEY_SIZES_BYTES = (16, 24, 32)


class KeyringError(ValueError):
    """A keyring or ``LEDGER_KEYS`` value is malformed. The message names the key id,
    never the key material."""


def _key_bytes(key_id: str, key: object) -> bytes:
    """The bytes of a base64 key, checked before AESCipher sees it (its errors are an
    OSError for an empty key and do not say which key is wrong)."""
    try:
        raw = b64decode(key, validate=True) if isinstance(key, str) else None
    except (binascii.Error, ValueError):  # non-ASCII text is a ValueError
        raw = None
    if raw is None or len(raw) not in KEY_SIZES_BYTES:
        raise KeyringError(
            f"key {key_id!r} is not base64 of a 16, 24 or 32 byte key (new_key() makes one)"
        )
    return raw


def new_key() -> str:
    """A new random 256-bit key, base64-encoded (keep it in your secret store)."""
    return b64encode(os.urandom(32)).decode()


class Keyring:
    """AES-GCM keys by id; ``current`` seals new data, every key opens old data."""

    def __init__(self, keys: Mapping[str, str], current: str) -> None:
        from eventsourcing.cryptography import AESCipher  # noqa: PLC0415 - optional extra
        from eventsourcing.utils import Environment  # noqa: PLC0415

        for key_id in keys:
            if not isinstance(key_id, str) or not key_id or ":" in key_id or "," in key_id:
                raise KeyringError(f"key id {key_id!r} must be non-empty, without ':' or ','")
            _key_bytes(key_id, keys[key_id])
        if current not in keys:
            raise KeyringError(f"current key {current!r} is not in the keyring")
        self.current = current
        self._ciphers = {
            key_id: AESCipher(Environment(env={AESCipher.CIPHER_KEY: key}))
            for key_id, key in keys.items()
        }

    @classmethod
    def from_env(cls, value: str) -> Keyring:
        """Parse ``"id:base64,id:base64"`` (the first is current); KeyringError if
        malformed (an id given twice included: which of its keys would be meant?)."""
        pairs = [item.split(":", 1) for item in value.split(",") if item.strip()]
        if not pairs or any(len(p) != 2 for p in pairs):
            raise KeyringError("LEDGER_KEYS must look like 'k2:<base64>,k1:<base64>'")
        keys: dict[str, str] = {}
        for key_id, key in ((k.strip(), v.strip()) for k, v in pairs):
            if key_id in keys:
                raise KeyringError(f"LEDGER_KEYS gives key id {key_id!r} more than once")
            keys[key_id] = key
        return cls(keys, current=pairs[0][0].strip())

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


def keyring_from_env(environ: Mapping[str, str] | None = None) -> Keyring | None:
    """The keyring that ``LEDGER_KEYS`` names (``"k2:<base64>,k1:<base64>"``, first =
    current) in ``environ`` (default: the process environment), or None if it is
    unset or empty. A malformed value raises :class:`KeyringError` (a ValueError)."""
    value = (os.environ if environ is None else environ).get("LEDGER_KEYS", "")
    return Keyring.from_env(value) if value.strip() else None

"""Request fingerprints and the shapes of a group of commands: each command with its
entry id and fingerprint (a :data:`Print`), and the group flattened (atomic batches
opened). Equal requests have equal fingerprints; a key reused for another request is
told apart by its fingerprint."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import orjson
from pydantic import BaseModel

from ledger.assets import EXACT
from ledger.hashing import sha256_hex
from ledger.model import entry_id_for_key

from .models import AtomicBatch, Command, ExpireHold

__all__ = ["Print", "fingerprint", "flatten", "key_ids_of", "prints_of"]


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        # Normalised and written in the ledger's own exact context: the caller's
        # (a precision of 6, capitals=0) must not make two requests look alike.
        return EXACT.to_sci_string(EXACT.normalize(value))
    raise TypeError(type(value).__name__)


def fingerprint(command: Command) -> str:
    """A hash of the request without its key: equal requests, equal fingerprints.

    Amounts are normalised (``"10.0"`` and ``"10.00"`` are the same request).
    ``ExpireHold`` is identified by its hold alone, so two sweeps agree. The hashed data
    is the command's ``model_dump()`` (read straight from the fields: a third of the
    cost on the write path; equality with ``model_dump`` is tested), as sorted JSON.
    """
    body = _fields(command)
    del body["key"]
    if type(command) is ExpireHold:
        del body["now"]
    data = orjson.dumps(body, default=_json_default, option=orjson.OPT_SORT_KEYS)
    return sha256_hex(data)


#: ``isinstance`` without pydantic's metaclass hook (half the cost; the write path asks
#: it for every command's fields).
_plain_isinstance = type.__instancecheck__


def _fields(model: BaseModel) -> dict[str, Any]:
    """What ``model.model_dump()`` returns, for the command models (which have no
    custom serialisers): nested models become dicts, other values stay as they are."""
    body = dict(model.__dict__)
    for name, value in body.items():
        if type(value) is tuple and value and _plain_isinstance(BaseModel, value[0]):
            body[name] = [_fields(item) for item in value]
    return body


Print = tuple[Command, uuid.UUID, str]
"""A command with its entry id (derived from its key) and its request fingerprint."""


def prints_of(commands: Sequence[Command]) -> list[Print]:
    """Each command with its entry id and request fingerprint."""
    return [(cmd, entry_id_for_key(cmd.key), fingerprint(cmd)) for cmd in commands]


def key_ids_of(prints: Sequence[Print], flat: Sequence[Command]) -> set[uuid.UUID]:
    """The ids of every key in a chunk: its commands' and their inner commands'."""
    key_ids = {key_id for _, key_id, _ in prints}
    key_ids.update(entry_id_for_key(cmd.key) for cmd in flat[len(prints) :])
    return key_ids


def flatten(commands: Sequence[Command]) -> list[Command]:
    """The commands, then the inner commands of atomic batches."""
    flat: list[Command] = list(commands)
    for cmd in commands:
        if type(cmd) is AtomicBatch:
            flat.extend(cmd.commands)
    return flat

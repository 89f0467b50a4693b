"""The Kafka message format of ledger events (schema ``ledger-event/1``).

One message per event, in log order:

* **key**: the event's stream id as text (an account's events share the key
  ``account_stream_id(account)``, an entry's events the entry id), so one account's or
  entry's events land in one partition, in order.
* **value** (JSON): ``{"schema": "ledger-event/1", "position": <log position>,
  "stream_id": "<uuid>", "version": <stream version>, "type": "<event topic>",
  "event": {...the event body as stored...}}``. ``position`` is unique and increasing
  in the log: consumers use it to ignore duplicates.
* **headers**: ``ledger-schema``, ``ledger-type`` (event topic, e.g.
  ``ledger:Entry:1``), ``ledger-position``, ``ledger-event-id`` (``<stream id>:<version>``),
  all UTF-8.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from ledger.events import LogEvent
from ledger.sealing import SEALED, open_body

__all__ = ["SCHEMA", "MessageError", "decode_message", "encode_event"]

SCHEMA = "ledger-event/1"


class MessageError(ValueError):
    """A message is not a ledger event of a schema this version understands."""


def encode_event(
    position: int, stream_id: uuid.UUID, version: int, topic: str, state: bytes
) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of one stored event; ``state`` is its JSON body."""
    sid = str(stream_id)
    value = orjson.dumps(
        {
            "schema": SCHEMA,
            "position": position,
            "stream_id": sid,
            "version": version,
            "type": topic,
            "event": orjson.Fragment(state),
        }
    )
    headers = [
        ("ledger-schema", SCHEMA.encode()),
        ("ledger-type", topic.encode()),
        ("ledger-position", str(position).encode()),
        ("ledger-event-id", f"{sid}:{version}".encode()),
    ]
    return sid.encode(), value, headers


#: The largest log position or stream version a message may carry (PostgreSQL BIGINT).
NUMBER_MAX = 2**63 - 1


def decode_message(value: bytes) -> LogEvent:
    """The event a message carries. Raises :class:`MessageError` for anything that is
    not a well-formed ``ledger-event/1`` message (not JSON, another schema, a field
    missing or of the wrong type or range); the error names the field, not its value."""
    try:
        body: dict[str, Any] = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        raise MessageError(f"message is not JSON: {e}") from None
    if not isinstance(body, dict) or body.get("schema") != SCHEMA:
        raise MessageError(f"message is not of schema {SCHEMA}")
    position = _number(body, "position")
    version = _number(body, "version")
    stream_id, topic, event = body.get("stream_id"), body.get("type"), body.get("event")
    try:
        sid = uuid.UUID(stream_id) if isinstance(stream_id, str) else None
    except ValueError:
        sid = None
    if sid is None:
        raise MessageError("message field 'stream_id' is not a UUID")
    if not isinstance(topic, str) or not topic:
        raise MessageError("message field 'type' is not a non-empty string")
    if not isinstance(event, dict):
        raise MessageError("message field 'event' is not a JSON object")
    if SEALED in event and not isinstance(event[SEALED], str):
        raise MessageError(f"message field 'event.{SEALED}' is not a string")
    return LogEvent(position, sid, version, topic, open_body(event))


def _number(body: dict[str, Any], field: str) -> int:
    """A positive integer field (JSON integers only: no bool, float or text)."""
    n = body.get(field)
    if type(n) is not int or not 1 <= n <= NUMBER_MAX:
        raise MessageError(f"message field {field!r} is not an integer from 1 to {NUMBER_MAX}")
    return n

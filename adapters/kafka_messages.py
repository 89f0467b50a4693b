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
from ledger.sealing import open_body

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


def decode_message(value: bytes) -> LogEvent:
    """The event a message carries."""
    try:
        body: dict[str, Any] = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        raise MessageError(f"message is not JSON: {e}") from None
    if not isinstance(body, dict) or body.get("schema") != SCHEMA:
        raise MessageError(f"message is not of schema {SCHEMA}")
    return LogEvent(
        int(body["position"]),
        uuid.UUID(body["stream_id"]),
        int(body["version"]),
        str(body["type"]),
        open_body(body["event"]),
    )

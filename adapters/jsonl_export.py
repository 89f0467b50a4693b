"""JSON Lines export (``ledger export``): every asset, account, account change and
entry of the log as the line the import reads back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson

from ledger.assets import Asset, iso_currency, plain, to_decimal
from ledger.commands.service import Ledger
from ledger.events import (
    TOPIC_ACCOUNT_CHANGED,
    TOPIC_ACCOUNT_OPENED,
    TOPIC_ASSET_DECLARED,
    TOPIC_ENTRY,
    LogEvent,
)
from ledger.sealing import sealing

__all__ = ["export_lines"]


def export_lines(books: Ledger) -> Iterator[bytes]:
    """Every asset, account, account change and entry as one JSON line, in log order
    (the import format); sealed personal fields are opened with the ledger's keyring."""
    scales: dict[str, int] = {}
    keys: dict[uuid.UUID, str] = {}
    assets: dict[str, Asset] = {}  # of each account
    position = 0
    while True:
        batch = books.store.read_log(position, 10_000)
        if not batch:
            return
        with sealing(books.keyring):  # not across the yields: only while decoding
            decoded = [LogEvent.from_notification(n) for n in batch]
        for e in decoded:
            if e.topic == TOPIC_ASSET_DECLARED:
                scales[e.body["code"]] = e.body["scale"]
                yield (
                    orjson.dumps(
                        {"kind": "asset", "code": e.body["code"], "scale": e.body["scale"]}
                    )
                    + b"\n"
                )
            elif e.topic == TOPIC_ACCOUNT_OPENED:
                scales.setdefault(e.body["asset"], e.body["scale"])
                asset = assets[e.body["account"]] = Asset(e.body["asset"], e.body["scale"])
                yield _account_line(e.body, asset)
            elif e.topic == TOPIC_ACCOUNT_CHANGED and "change" in e.body:
                yield _change_line(e.body, assets[e.body["account"]])
            elif e.topic == TOPIC_ENTRY:
                keys[e.stream_id] = e.body["key"]
                yield _line(e, scales, keys)
        position = batch[-1].id


def _bound(minor: str | None, asset: Asset) -> str | None:
    return None if minor is None else plain(to_decimal(int(minor), asset))


def _account_line(body: dict[str, Any], asset: Asset) -> bytes:
    out: dict[str, Any] = {
        "kind": "account",
        "key": body["key"],
        "account": body["account"],
        "asset": body["asset"],
        "normal": body["normal"],
        "min_balance": _bound(body["min"], asset),
        "max_balance": _bound(body["max"], asset),
        "owner": body["owner"],
        "metadata": body["metadata"],
    }
    return orjson.dumps(out) + b"\n"


def _change_line(body: dict[str, Any], asset: Asset) -> bytes:
    change = body["change"]
    out: dict[str, Any] = {"kind": change["kind"], "key": change["key"], "account": body["account"]}
    if change["kind"] == "change_limits":
        out["min_balance"] = _bound(change["min"], asset)
        out["max_balance"] = _bound(change["max"], asset)
    if change["kind"] == "freeze_account":
        out["mode"] = change["mode"]
    if "reason" in body:
        out["reason"] = body["reason"]
    return orjson.dumps(out) + b"\n"


def _line(e: LogEvent, scales: dict[str, int], keys: dict[uuid.UUID, str]) -> bytes:
    body = e.body

    def amount(asset: str, minor: int) -> str:
        scale = scales.get(asset)
        iso = iso_currency(asset)
        return plain(
            to_decimal(minor, Asset(asset, scale if scale is not None else iso.scale if iso else 0))
        )

    out: dict[str, Any] = {"key": body["key"]}
    if body["kind"] != "posted":
        out["kind"] = body["kind"]
    out["effective_at"] = body["effective_at"]
    out["description"] = body["description"]
    out["legs"] = [
        {"account": a, "amount": amount(asset, int(m)), "currency": asset}
        for a, asset, m in body.get("terms") or body["legs"]
    ]
    if body.get("hold"):
        out["hold"] = keys.get(uuid.UUID(body["hold"]), body["hold"])
    if body.get("reverses"):
        out["reverses"] = keys.get(uuid.UUID(body["reverses"]), body["reverses"])
    if body.get("request"):
        out["request"] = keys.get(uuid.UUID(body["request"]), body["request"])
    if body.get("expires_at"):
        out["expires_at"] = body["expires_at"]
    out["metadata"] = body["metadata"]
    return orjson.dumps(out) + b"\n"

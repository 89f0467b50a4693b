"""Write side: command models, one handler per command, and the executor."""

from ledger.commands.models import (
    AtomicBatch,
    Command,
    DeclareAsset,
    DeclineRequest,
    ExpireHold,
    LegInput,
    OpenAccount,
    PayRequest,
    PlaceHold,
    PostEntry,
    PostHold,
    RequestPayment,
    ReverseEntry,
    VoidHold,
)

__all__ = [
    "AtomicBatch",
    "Command",
    "DeclareAsset",
    "DeclineRequest",
    "ExpireHold",
    "LegInput",
    "OpenAccount",
    "PayRequest",
    "PlaceHold",
    "PostEntry",
    "PostHold",
    "RequestPayment",
    "ReverseEntry",
    "VoidHold",
]

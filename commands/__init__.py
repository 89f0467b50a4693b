"""Write side: command models, one handler per command, and the executor."""

from ledger.commands.models import (
    AtomicBatch,
    Command,
    DeclareAsset,
    ExpireHold,
    LegInput,
    OpenAccount,
    PlaceHold,
    PostEntry,
    PostHold,
    ReverseEntry,
    VoidHold,
)

__all__ = [
    "AtomicBatch",
    "Command",
    "DeclareAsset",
    "ExpireHold",
    "LegInput",
    "OpenAccount",
    "PlaceHold",
    "PostEntry",
    "PostHold",
    "ReverseEntry",
    "VoidHold",
]

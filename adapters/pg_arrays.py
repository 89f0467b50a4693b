"""PostgreSQL arrays in binary wire format, made in one pass for the append's parameters.

psycopg adapts a Python list by looking at its elements (a scan for their type, then
a dumper chosen, then each element dumped through it) on every call: for the append,
14 short arrays per group, that was a third of the committer thread's work per
commit (measured: 390 us of client CPU per call, 250 us with these). An array built
here already has its PostgreSQL type and its bytes; its dumper only hands them over.

The dumpers are registered on each connection that sends such arrays (see
:func:`adapt`; the store remembers which it adapted), never on psycopg's
process-wide adapters: the host's own connections are left as they are.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, ClassVar

from psycopg.adapt import Dumper
from psycopg.pq import Format

__all__ = [
    "ByteaArray",
    "Int8Array",
    "PgArray",
    "TextArray",
    "TimestamptzArray",
    "UuidArray",
    "adapt",
]

_HEAD = struct.Struct(">iiiii")  # dimensions, has nulls, element oid, length, lower bound
_EMPTY = struct.Struct(">iii")
_LENGTH = struct.Struct(">i")
_INT8 = struct.Struct(">iq")  # the element's length (8), then the value
_UUID_LENGTH = _LENGTH.pack(16)
_NULL = _LENGTH.pack(-1)
#: PostgreSQL's timestamp epoch.
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class PgArray:
    """A one-dimensional PostgreSQL array, already in binary wire format."""

    __slots__ = ("data",)
    #: The array type's oid, and its element type's.
    oid: ClassVar[int] = 0
    element_oid: ClassVar[int] = 0

    def __init__(self, count: int, has_nulls: bool, elements: bytes) -> None:
        if count:
            head = _HEAD.pack(1, int(has_nulls), self.element_oid, count, 1)
        else:
            head = _EMPTY.pack(0, 0, self.element_oid)
        self.data = head + elements


class UuidArray(PgArray):
    """``uuid[]``."""

    __slots__ = ()
    oid, element_oid = 2951, 2950

    @classmethod
    def of(cls, values: Iterable[uuid.UUID]) -> UuidArray:
        """The array of ``values`` (none may be None)."""
        parts = [_UUID_LENGTH + value.bytes for value in values]
        return cls(len(parts), False, b"".join(parts))


class Int8Array(PgArray):
    """``int8[]``."""

    __slots__ = ()
    oid, element_oid = 1016, 20

    @classmethod
    def of(cls, values: Iterable[int]) -> Int8Array:
        """The array of ``values`` (none may be None; each fits in 64 bits)."""
        pack = _INT8.pack
        parts = [pack(8, value) for value in values]
        return cls(len(parts), False, b"".join(parts))


class TextArray(PgArray):
    """``text[]`` (UTF-8, the encoding the store's connections use)."""

    __slots__ = ()
    oid, element_oid = 1009, 25

    @classmethod
    def of(cls, values: Iterable[str]) -> TextArray:
        """The array of ``values`` (none may be None)."""
        pack = _LENGTH.pack
        parts = []
        for value in values:
            data = value.encode()
            parts.append(pack(len(data)) + data)
        return cls(len(parts), False, b"".join(parts))


class ByteaArray(PgArray):
    """``bytea[]``."""

    __slots__ = ()
    oid, element_oid = 1001, 17

    @classmethod
    def of(cls, values: Iterable[bytes]) -> ByteaArray:
        """The array of ``values`` (none may be None)."""
        pack = _LENGTH.pack
        parts = [pack(len(value)) + value for value in values]
        return cls(len(parts), False, b"".join(parts))


class TimestamptzArray(PgArray):
    """``timestamptz[]``; None elements are NULL."""

    __slots__ = ()
    oid, element_oid = 1185, 1184

    @classmethod
    def of(cls, values: Iterable[datetime | None]) -> TimestamptzArray:
        """The array of ``values`` (each aware, or None)."""
        pack = _INT8.pack
        parts = []
        nulls = False
        for value in values:
            if value is None:
                parts.append(_NULL)
                nulls = True
                continue
            if value.utcoffset() is None:
                raise ValueError(f"a time without a zone: {value!r}")
            delta = value - _PG_EPOCH
            micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
            parts.append(pack(8, micros))
        return cls(len(parts), nulls, b"".join(parts))


class _PgArrayDumper(Dumper):
    format = Format.BINARY

    def dump(self, obj: Any) -> bytes:
        data: bytes = obj.data
        return data


def _dumper_for(cls: type[PgArray]) -> type[Dumper]:
    return type(f"{cls.__name__}Dumper", (_PgArrayDumper,), {"oid": cls.oid})


_DUMPERS = {
    cls: _dumper_for(cls) for cls in (UuidArray, Int8Array, TextArray, ByteaArray, TimestamptzArray)
}


def adapt(conn: Any) -> None:
    """Let ``conn`` (a psycopg connection) send these arrays as parameters."""
    for cls, dumper in _DUMPERS.items():
        conn.adapters.register_dumper(cls, dumper)

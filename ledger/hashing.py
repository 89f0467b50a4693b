"""SHA-256 and SHA-1 for the write path, from copies of a ready hash object.

``hashlib.sha256(data)`` looks its algorithm up in OpenSSL on every call; copying a
hash object made once skips that lookup (measured: 0.52 us instead of 0.75 us for a
350-byte event, and the write path hashes about four times per transfer). The digests
are the same.
"""

from __future__ import annotations

import hashlib

__all__ = ["sha1_digest", "sha256_hex"]

_SHA256 = hashlib.sha256()
_SHA1 = hashlib.sha1(usedforsecurity=False)


def sha256_hex(data: bytes) -> str:
    """``hashlib.sha256(data).hexdigest()``."""
    digest = _SHA256.copy()
    digest.update(data)
    return digest.hexdigest()


def sha1_digest(data: bytes) -> bytes:
    """``hashlib.sha1(data).digest()`` (for name-based UUIDs, not for security)."""
    digest = _SHA1.copy()
    digest.update(data)
    return digest.digest()

"""The write path's hashes are hashlib's, whatever the input."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

from hypothesis import given
from hypothesis import strategies as st

from ledger.hashing import sha1_digest, sha256_hex


@given(st.binary(max_size=5000))
def test_digests_equal_hashlib(data: bytes) -> None:
    assert sha256_hex(data) == hashlib.sha256(data).hexdigest()
    assert sha1_digest(data) == hashlib.sha1(data).digest()


def test_threads_share_the_ready_objects_safely() -> None:
    # Large inputs release the GIL while hashing: copies must not mix inputs.
    inputs = [bytes([i]) * (4096 + i) for i in range(64)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda d: (sha256_hex(d), sha1_digest(d)), inputs * 20))
    want = [(hashlib.sha256(d).hexdigest(), hashlib.sha1(d).digest()) for d in inputs * 20]
    assert got == want

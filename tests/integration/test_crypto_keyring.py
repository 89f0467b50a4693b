"""A malformed keyring is refused with a typed error that names the key id and never
echoes the key; an id given twice in LEDGER_KEYS is refused rather than sealing with
a key the operator did not make current."""

from __future__ import annotations

import os
import subprocess
import sys
from base64 import b64encode
from pathlib import Path

import pytest

from ledger.adapters.crypto import Keyring, KeyringError, keyring_from_env, new_key

MATERIAL = "TOPSECRETKEYMATERIAL"


@pytest.mark.parametrize(
    "key",
    [
        "",  # was an OSError: 'CIPHER_KEY' not in env
        MATERIAL,  # not base64 of a valid size
        MATERIAL + "!!",  # not base64 at all
        b64encode(bytes(range(31))).decode(),  # wrong length
        b64encode(bytes(range(8))).decode(),
        "ключ",  # not ASCII
    ],
)
def test_a_bad_key_is_a_typed_error_naming_its_id_not_its_material(key: str) -> None:
    with pytest.raises(KeyringError, match="'k7'") as raised:
        Keyring({"k7": key}, current="k7")
    assert MATERIAL not in str(raised.value) and (not key or key not in str(raised.value))
    with pytest.raises(KeyringError, match="'k7'") as raised:
        keyring_from_env({"LEDGER_KEYS": f"k1:{new_key()},k7:{key}"})
    assert MATERIAL not in str(raised.value) and (not key or key not in str(raised.value))


def test_every_valid_aes_key_size_is_accepted() -> None:
    for size in (16, 24, 32):
        ring = Keyring({"k": b64encode(os.urandom(size)).decode()}, current="k")
        assert ring.open(ring.seal(b"x")) == b"x"


def test_a_key_id_given_twice_is_refused() -> None:
    """Before, the dict kept the last key under the id, so the ring sealed new data
    with the second key while LEDGER_KEYS says the first is current."""
    first, second = new_key(), new_key()
    with pytest.raises(KeyringError, match="'k1' more than once") as raised:
        Keyring.from_env(f"k1:{first},k1:{second}")
    assert first not in str(raised.value) and second not in str(raised.value)


def test_the_cli_refuses_an_empty_key_in_one_line(tmp_path: Path) -> None:
    """``LEDGER_KEYS=k1:`` made the CLI crash with an OSError traceback."""
    for value in ("k1:", f"k1:{MATERIAL}"):
        run = subprocess.run(
            [
                sys.executable,
                "-c",
                "from ledger.adapters.cli import main; main()",
                "--store",
                f"sqlite:///{tmp_path}/cli.db",
                "init",
            ],
            env={**os.environ, "LEDGER_KEYS": value},
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == 2, run.stderr
        assert "Traceback" not in run.stderr and "'k1'" in run.stderr
        assert MATERIAL not in run.stderr and run.stdout == ""

"""The test kit works from a fresh virtual environment with only the package (and
its ``testing`` extra) installed: build a wheel from this checkout, install it into a
new venv, and run the example test of examples/testing_kit there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_example_kit_test_passes_in_a_fresh_venv(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        if os.environ.get("CI"):
            pytest.fail("uv is not on PATH under CI (scripts/bootstrap.sh installs it)")
        pytest.skip("uv not on PATH (scripts/bootstrap.sh installs it)")
    dist = tmp_path / "dist"
    subprocess.run(
        [uv, "build", "--wheel", "--out-dir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next(dist.glob("*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(python), f"{wheel}[testing]", "pytest==9.2.0"],
        check=True,
        capture_output=True,
    )
    # only the installed package: run from a directory outside the checkout
    work = tmp_path / "app"
    shutil.copytree(ROOT / "examples" / "testing_kit", work)
    run = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(work)],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout
    imported = subprocess.run(
        [str(python), "-c", "import ledger.testing, sys; print(ledger.testing.__file__)"],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(venv) in imported.stdout  # the installed copy, not this checkout

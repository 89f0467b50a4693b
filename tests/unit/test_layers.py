"""The import-linter contracts of pyproject.toml hold on the package as it ships, and
fail on an import that points outward (planted in a copy of the package)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())
LINT = Path(sys.executable).with_name("lint-imports")


def _installed_layout(target: Path) -> Path:
    """The package's files as installed (package-dir mapping applied) under target."""
    site = target / "site"
    for package, folder in CONFIG["tool"]["setuptools"]["package-dir"].items():
        shutil.copytree(
            ROOT / folder,
            site.joinpath(*package.split(".")),
            ignore=shutil.ignore_patterns("__pycache__", "testing")
            if package == "ledger"
            else None,
            dirs_exist_ok=True,
        )
    shutil.copytree(ROOT / "ledger" / "testing", site / "ledger" / "testing")
    return site


def _lint(site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--no-cache", "--no-logo", "--config", str(ROOT / "pyproject.toml")],
        env={**os.environ, "PYTHONPATH": str(site)},
        cwd=site,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return _installed_layout(tmp_path)


def test_the_shipped_layers_hold(site: Path) -> None:
    result = _lint(site)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "planted", "broken"),
    [
        ("ledger/model.py", "import ledger.adapters.postgres_store", "ledger.model"),
        ("ledger/events.py", "from ledger.commands import executor", "ledger.events"),
        ("ledger/projections/feed.py", "from ledger.commands import handlers", "projections"),
        ("ledger/commands/handlers.py", "import ledger.adapters.urls", "ledger.commands"),
        ("ledger/adapters/urls.py", "import ledger.adapters.cli", "ledger.adapters.urls"),
        ("ledger/adapters/jsonl.py", "import ledger.adapters.cli._common", "ledger.adapters.jsonl"),
    ],
)
def test_an_outward_import_breaks_a_contract(
    site: Path, module: str, planted: str, broken: str
) -> None:
    path = site / module
    path.write_text(path.read_text() + f"\n{planted}  # planted\n")
    result = _lint(site)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and broken in result.stdout


def test_every_domain_module_is_in_the_domain_layer() -> None:
    """A new module in ledger/ is domain and must be listed (else it escapes the
    contract); only the public face (``__init__``, ``payments``) stays outside."""
    layers = next(c for c in CONFIG["tool"]["importlinter"]["contracts"] if c["id"] == "layers")
    domain = {name.strip() for name in layers["layers"][-1].split(":")}
    files = {f"ledger.{p.stem}" for p in (ROOT / "ledger").glob("*.py")}
    assert files - domain == {"ledger.__init__", "ledger.payments"}
    assert domain <= files

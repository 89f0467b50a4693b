#!/usr/bin/env bash
# Check what ships: install the package into a temporary target (so the ledger.*
# namespace is exactly the installed one), run mypy --strict on it and on the
# examples against it, and check its layers with import-linter (the contracts in
# pyproject.toml: imports point inward only).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
target="$(mktemp -d)"
trap 'rm -rf "$target"' EXIT
# setuptools reuses build/lib without cleaning it: a module moved or deleted since the
# last build would still ship from there.
rm -rf build
uv pip install -q --no-deps --target "$target/site" .
cp -r examples "$target/examples"
cd "$target"
MYPYPATH="$target/site" "$root/.venv/bin/mypy" --strict \
    --python-executable "$root/.venv/bin/python" --no-incremental -p ledger
MYPYPATH="$target/site" "$root/.venv/bin/mypy" --strict \
    --python-executable "$root/.venv/bin/python" --no-incremental examples/payment_service/app.py
PYTHONPATH="$target/site" "$root/.venv/bin/lint-imports" --no-cache --no-logo \
    --config "$root/pyproject.toml"

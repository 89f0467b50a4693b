#!/usr/bin/env bash
# Type-check what ships: install the package into a temporary target (so the
# ledger.* namespace is exactly the installed one) and run mypy --strict on it,
# and on the examples against that installed package.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
target="$(mktemp -d)"
trap 'rm -rf "$target"' EXIT
uv pip install -q --no-deps --target "$target/site" .
cp -r examples "$target/examples"
cd "$target"
MYPYPATH="$target/site" "$root/.venv/bin/mypy" --strict \
    --python-executable "$root/.venv/bin/python" --no-incremental -p ledger
MYPYPATH="$target/site" "$root/.venv/bin/mypy" --strict \
    --python-executable "$root/.venv/bin/python" --no-incremental examples/payment_service/app.py

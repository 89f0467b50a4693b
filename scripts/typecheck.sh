#!/usr/bin/env bash
# Type-check what ships: install the package into a temporary target (so the
# ledger.* namespace is exactly the installed one) and run mypy --strict on it.
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(mktemp -d)"
trap 'rm -rf "$target"' EXIT
uv pip install -q --no-deps --target "$target/site" .
( cd "$target" && MYPYPATH="$target/site" "$OLDPWD/.venv/bin/mypy" --strict \
    --python-executable "$OLDPWD/.venv/bin/python" --no-incremental -p ledger )

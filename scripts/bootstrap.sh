#!/usr/bin/env bash
# Make sure uv is available and the locked environment is installed in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install -q "uv==0.13.8" >&2 || python3 -m pip install -q --user "uv==0.13.8" >&2
  export PATH="$HOME/.local/bin:$PATH"
fi
uv sync --frozen -q >&2

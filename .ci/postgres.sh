#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL 15 server on loopback for tests and benchmarks.
#   .ci/postgres.sh start   -> installs Debian's postgresql if missing, prints the URL
#   .ci/postgres.sh status  -> exit 0 if running
#   .ci/postgres.sh stop
set -euo pipefail
PGPORT="${LEDGER_PG_PORT:-55432}"
PGDATA="${LEDGER_PG_DATA:-/tmp/ledger-pgdata-$PGPORT}"
BIN=""
find_bin() {
  for d in /usr/lib/postgresql/*/bin; do
    if [ -x "$d/pg_ctl" ]; then BIN="$d"; fi
  done
}
as_pg() {
  if [ "$(id -u)" = "0" ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "${1:-start}" in
  start)
    find_bin
    if [ -z "$BIN" ]; then
      echo "installing PostgreSQL from Debian's packages..." >&2
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >&2
      apt-get install -y -qq postgresql >&2
      find_bin
    fi
    if ! as_pg "$BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
      if [ ! -s "$PGDATA/PG_VERSION" ]; then
        mkdir -p "$PGDATA"
        [ "$(id -u)" = "0" ] && chown postgres:postgres "$PGDATA"
        as_pg "$BIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 >/dev/null
      fi
      as_pg "$BIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 \
        -o "-p $PGPORT -c listen_addresses=127.0.0.1 -k /tmp -c max_connections=200" start >/dev/null
    fi
    for db in ledger_test ledger_bench; do
      as_pg "$BIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1 ||
        as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres "$db"
    done
    echo "postgresql://postgres@127.0.0.1:$PGPORT/ledger_test"
    ;;
  status)
    find_bin
    [ -n "$BIN" ] && as_pg "$BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1
    ;;
  stop)
    find_bin
    [ -n "$BIN" ] && as_pg "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
    ;;
  *) echo "usage: $0 start|status|stop" >&2; exit 2 ;;
esac

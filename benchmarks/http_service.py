"""The example payment service over HTTP: payments/s against the same service's
``/health`` rate, in one run.

One uvicorn process serves ``examples/payment_service`` (async endpoints on an
``AsyncLedger``) on a fresh PostgreSQL database with 1,000 funded users; ``wrk``
(Debian's package, installed if missing) drives it from another process with 32
connections: first ``GET /health`` (the cost of HTTP, routing and the event loop
alone), then ``POST /payments`` with a bearer token, a unique ``Idempotency-Key`` and
a JSON body, between random pairs of users, for ``--seconds`` each. Figures:
requests/s, the share payments/health (the part of a request the ledger costs), and
the latency percentiles wrk reports.

Expected on a 2-core machine: ``/health`` a few thousand requests/s (uvicorn and
FastAPI in one Python process, beside wrk); a payment adds authentication, body
validation, a recipe and one share of a group commit (the 32 requests in flight share
transactions), so half the health rate or more.

Run: ``.venv/bin/python -m benchmarks.http_service`` (starts the throwaway PostgreSQL
with ``.ci/postgres.sh`` unless ``LEDGER_BENCH_POSTGRES_URL`` is set).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.transfers import fresh_pg_database, postgres_base_url

ROOT = Path(__file__).resolve().parents[1]
USERS = 1_000
CONNECTIONS = 32
CLI = [sys.executable, "-c", "from ledger.adapters.cli import main; main()"]

_WRK_SCRIPT = """
local counter = 0
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function init(args)
  math.randomseed(20261130 + id)
  failures = 0
end
request = function()
  counter = counter + 1
  local s = math.random(0, USERS - 1)
  local r = (s + math.random(1, USERS - 1)) % USERS
  wrk.headers["Authorization"] = "Bearer token-of-u" .. s
  wrk.headers["Idempotency-Key"] = string.format("%s-%d-%d", PREFIX, id, counter)
  wrk.headers["Content-Type"] = "application/json"
  local body = string.format(
    '{"from":"users:u%d:wallet","to":"users:u%d:wallet","amount":"0.01","currency":"USD"}',
    s, r)
  return wrk.format("POST", "/payments", nil, body)
end
response = function(status, headers, body)
  if status ~= 201 then failures = failures + 1 end
end
function done(summary, latency, requests)
  local failed = 0
  for _, thread in ipairs(threads) do failed = failed + thread:get("failures") end
  io.write(string.format('RESULT {"requests": %d, "failed": %d}\\n', summary.requests, failed))
end
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True)
    found = shutil.which("wrk")
    assert found is not None
    return found


def setup_books(url: str) -> dict[str, str]:
    """1,000 users with funded wallets; their tokens."""
    from ledger import Ledger

    with Ledger.open(url) as books:
        books.open_account("bank", "USD", normal="debit")
        books.submit_all(
            [
                {
                    "kind": "open_account",
                    "key": f"open-u{i}",
                    "account": f"users:u{i}:wallet",
                    "asset": "USD",
                    "min_balance": "0",
                    "owner": f"user:u{i}",
                }
                for i in range(USERS)
            ]
        )
        books.submit_all(
            [
                {
                    "kind": "post_entry",
                    "key": f"fund-u{i}",
                    "legs": [
                        {"account": "bank", "amount": "100000", "asset": "USD"},
                        {"account": f"users:u{i}:wallet", "amount": "-100000", "asset": "USD"},
                    ],
                }
                for i in range(USERS)
            ]
        )
    return {f"token-of-u{i}": f"u{i}" for i in range(USERS)}


#: uvicorn's event loop and HTTP parser per ``--server``: the pure-Python defaults
#: (what ``pip install uvicorn`` gives; the share's convention) or the standard
#: extras (``uvicorn[standard]``: uvloop and httptools, what production should run).
SERVERS = {
    "pure": ("asyncio", "h11"),
    "standard": ("uvloop", "httptools"),
}


def start_service(
    url: str, tokens: dict[str, str], port: int, server: str
) -> subprocess.Popen[bytes]:
    # The read models follow the log in a worker process of their own (``ledger
    # projections follow``, started beside), as a deployment runs them: in the web
    # process their thread would share its interpreter lock with the requests.
    env = {
        **os.environ,
        "LEDGER_STORE": url,
        "LEDGER_EXAMPLE_TOKENS": json.dumps(tokens),
        "LEDGER_EXAMPLE_FOLLOW": "0",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app:app",
            "--app-dir",
            str(ROOT / "examples" / "payment_service"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--loop",
            SERVERS[server][0],
            "--http",
            SERVERS[server][1],
        ],
        env=env,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("the example service did not start")
        time.sleep(0.2)


def run_wrk(wrk: str, url: str, seconds: float, script: str | None) -> dict[str, Any]:
    """wrk's rate and latency percentiles (ms) for one endpoint."""
    cmd = [wrk, "-t", "2", "-c", str(CONNECTIONS), "-d", f"{seconds:.0f}s", "--latency"]
    if script is not None:
        cmd += ["-s", script]
    out = subprocess.run([*cmd, url], check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = {}
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            result["requests_per_s"] = round(float(parts[1]))
        elif len(parts) == 2 and parts[0] in ("50%", "90%", "99%"):
            result[f"latency_ms_p{parts[0][:-1]}"] = _ms(parts[1])
        elif line.startswith("RESULT "):
            result.update(json.loads(line[len("RESULT ") :]))
        elif "Non-2xx" in line:
            result["non_2xx"] = int(parts[-1])
    return result


def _ms(text: str) -> float:
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return round(float(text[: -len(unit)]) * factor, 2)
    raise ValueError(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/http_service.json")
    parser.add_argument(
        "--server",
        choices=sorted(SERVERS),
        default="pure",
        help="uvicorn's loop and HTTP parser: pure (asyncio, h11) or standard (uvloop, httptools)",
    )
    args = parser.parse_args()
    wrk = ensure_wrk()
    base = postgres_base_url()
    url = fresh_pg_database(base, "bench_http")
    tokens = setup_books(url)
    port = _free_port()
    proc = start_service(url, tokens, port, args.server)
    follower = subprocess.Popen(
        [*CLI, "--store", url, "projections", "follow"],
        cwd=ROOT,
    )
    tmp = Path(tempfile.mkdtemp(prefix="ledger-http-"))
    runs: list[dict[str, Any]] = []
    try:
        # Warm up both endpoints (the ledger's caches, PostgreSQL's buffers, the
        # read-model follower), so that every run measures the steady state.
        run_wrk(wrk, f"http://127.0.0.1:{port}/health", 3, None)
        warm = tmp / "warm.lua"
        warm.write_text(f'USERS = {USERS}\nPREFIX = "warm-{time.time_ns()}"\n' + _WRK_SCRIPT)
        run_wrk(wrk, f"http://127.0.0.1:{port}", 5, str(warm))
        for r in range(args.runs):
            script = tmp / f"pay{r}.lua"
            script.write_text(
                f'USERS = {USERS}\nPREFIX = "bench-{r}-{time.time_ns()}"\n' + _WRK_SCRIPT
            )
            health = run_wrk(wrk, f"http://127.0.0.1:{port}/health", args.seconds, None)
            pay = run_wrk(wrk, f"http://127.0.0.1:{port}", args.seconds, str(script))
            share = pay["requests_per_s"] / health["requests_per_s"]
            runs.append({"health": health, "payments": pay, "share": round(share, 3)})
            print(
                f"  run {r}: health {health['requests_per_s']}/s (p99 "
                f"{health.get('latency_ms_p99')} ms); payments {pay['requests_per_s']}/s "
                f"(p50 {pay.get('latency_ms_p50')} ms, p99 {pay.get('latency_ms_p99')} ms, "
                f"failed {pay.get('failed')}); share {share:.3f}",
                flush=True,
            )
    finally:
        for p in (proc, follower):
            p.terminate()
            p.wait(timeout=30)
    runs.sort(key=lambda x: x["share"])
    loop, http = SERVERS[args.server]
    median = runs[len(runs) // 2]
    print(f"median share {median['share']:.3f}")
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "server": {"name": args.server, "loop": loop, "http": http},
        "connections": CONNECTIONS,
        "seconds_per_run": args.seconds,
        "median": median,
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""End-to-end tests of the example payment service (examples/payment_service) over
HTTP: two instances of the service, one real PostgreSQL, retries and concurrent
duplicate requests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger import Ledger
from ledger.audit import audit
from tests.conftest import require_postgres, reset_postgres

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
P2P_LIMIT = "500"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def service() -> Iterator[tuple[str, list[str]]]:
    url = require_postgres("example_service")
    reset_postgres(url)
    env = {**os.environ, "LEDGER_STORE": url, "LEDGER_EXAMPLE_P2P_LIMIT": P2P_LIMIT}
    procs: list[subprocess.Popen[bytes]] = []
    bases: list[str] = []
    for _ in range(2):
        port = _free_port()
        procs.append(
            subprocess.Popen(
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
                ],
                env=env,
                cwd=ROOT,
            )
        )
        bases.append(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        for base in bases:
            while True:
                try:
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail("the example service did not start")
                time.sleep(0.1)
        yield url, bases
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)


def post(base: str, path: str, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    return httpx.post(f"{base}{path}", json=body, headers=headers, timeout=30)


def available(base: str, account: str) -> Decimal:
    response = httpx.get(f"{base}/accounts/{account}", timeout=10)
    assert response.status_code == 200, response.text
    return Decimal(response.json()["available"])


def open_wallet(base: str, name: str, amount: str | None = None) -> None:
    assert (
        post(base, "/accounts", {"id": name, "currency": "USD", "owner": name}).status_code == 201
    )
    if amount is not None:
        r = post(
            base, "/deposits", {"wallet": name, "amount": amount, "currency": "USD"}, f"dep:{name}"
        )
        assert r.status_code == 201, r.text


def test_payment_retry_returns_original_result(service: tuple[str, list[str]]) -> None:
    _, (a, b) = service
    open_wallet(a, "alice", "100.00")
    open_wallet(a, "bob")
    body = {"from": "alice", "to": "bob", "amount": "30.00", "currency": "USD", "note": "rent"}
    first = post(a, "/payments", body, "pay-1")
    assert first.status_code == 201, first.text
    again = post(b, "/payments", body, "pay-1")  # the retry lands on the other instance
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert available(a, "alice") == Decimal("70.00")
    other = post(a, "/payments", {**body, "amount": "31.00"}, "pay-1")
    assert other.status_code == 409 and other.json()["error"] == "idempotency_conflict"


def test_bad_requests_are_refused_and_change_nothing(service: tuple[str, list[str]]) -> None:
    _, (a, _) = service
    open_wallet(a, "frank", "10.00")
    open_wallet(a, "gina")
    body = {"from": "frank", "to": "gina", "amount": "10.01", "currency": "USD"}
    poor = post(a, "/payments", body, "frank-1")
    assert poor.status_code == 422 and poor.json()["error"] == "balance_rule_violated"
    post(a, "/deposits", {"wallet": "frank", "amount": "5", "currency": "USD"}, "dep:frank:2")
    assert post(a, "/payments", body, "frank-1").status_code == 422  # stays rejected
    assert post(a, "/payments", body).status_code == 400  # no key
    as_float = {**body, "amount": 1.5}
    assert post(a, "/payments", as_float, "frank-2").status_code == 422  # JSON number refused
    decimals = post(a, "/payments", {**body, "amount": "1.001"}, "frank-3")
    assert decimals.status_code == 400 and decimals.json()["error"] == "invalid_amount"
    assert post(a, "/payments", {**body, "to": "nobody"}, "frank-4").status_code == 422
    assert available(a, "frank") == Decimal("15.00")
    assert available(a, "gina") == Decimal("0.00")


def test_concurrent_duplicates_apply_once(service: tuple[str, list[str]]) -> None:
    _, bases = service
    open_wallet(bases[0], "hana", "100.00")
    open_wallet(bases[0], "ivan")
    body = {"from": "hana", "to": "ivan", "amount": "7.00", "currency": "USD"}
    with ThreadPoolExecutor(16) as pool:
        responses = list(
            pool.map(lambda i: post(bases[i % 2], "/payments", body, "dup-1"), range(32))
        )
    codes = sorted(r.status_code for r in responses)
    assert codes.count(201) == 1 and codes.count(200) == 31, codes
    assert len({r.json()["id"] for r in responses}) == 1
    assert available(bases[1], "ivan") == Decimal("7.00")


def test_racing_payments_never_overdraw(service: tuple[str, list[str]]) -> None:
    _, bases = service
    open_wallet(bases[0], "jack", "100.00")
    open_wallet(bases[0], "kate")
    body = {"from": "jack", "to": "kate", "amount": "5.00", "currency": "USD"}
    with ThreadPoolExecutor(12) as pool:
        responses = list(
            pool.map(lambda i: post(bases[i % 2], "/payments", body, f"race-{i}"), range(30))
        )
    codes = [r.status_code for r in responses]
    assert codes.count(201) == 20 and codes.count(422) == 10, codes
    assert available(bases[0], "jack") == Decimal("0.00")
    assert available(bases[1], "kate") == Decimal("100.00")


def test_concurrent_refunds_never_exceed_the_charge(service: tuple[str, list[str]]) -> None:
    _, bases = service
    open_wallet(bases[0], "lena", "80.00")
    post(bases[0], "/accounts", {"id": "shop", "currency": "USD", "owner": "shop"})
    charged = post(
        bases[0],
        "/charges",
        {
            "customer": "lena",
            "merchant": "shop",
            "amount": "50.00",
            "currency": "USD",
            "fee": "2.00",
        },
        "charge-1",
    )
    assert charged.status_code == 201, charged.text
    path = f"/charges/{charged.json()['id']}/refunds"
    with ThreadPoolExecutor(8) as pool:
        responses = list(
            pool.map(lambda i: post(bases[i % 2], path, {"amount": "10.00"}, f"rf-{i}"), range(8))
        )
    codes = [r.status_code for r in responses]
    assert codes.count(201) == 5 and codes.count(422) == 3, codes
    assert {r.json()["error"] for r in responses if r.status_code == 422} == {
        "entry_not_reversible"
    }
    assert available(bases[0], "lena") == Decimal("80.00")
    assert available(bases[0], "shop") == Decimal("0.00")


def test_risk_veto_is_final(service: tuple[str, list[str]]) -> None:
    _, (a, b) = service
    open_wallet(a, "mia", "1000.00")
    open_wallet(a, "noah")
    body = {"from": "mia", "to": "noah", "amount": "600.00", "currency": "USD"}
    vetoed = post(a, "/payments", body, "big-1")
    assert vetoed.status_code == 403 and vetoed.json()["error"] == "vetoed"
    assert post(b, "/payments", body, "big-1").status_code == 403
    assert post(b, "/payments", {**body, "amount": "400.00"}, "small-1").status_code == 201
    assert available(a, "noah") == Decimal("400.00")


def test_books_audit_clean_after_the_run(service: tuple[str, list[str]]) -> None:
    url, _ = service
    with Ledger.open(url) as books:
        report = audit(books.store)
    assert report.clean, report.findings

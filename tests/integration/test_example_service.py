"""End-to-end tests of the example payment service (examples/payment_service) over
HTTP: two instances of the service, one real PostgreSQL, retries and concurrent
duplicate requests, and who may do what (bearer tokens, own accounts only, the feed's
visibility)."""

from __future__ import annotations

import json
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
from ledger.projections.audit import audit
from tests.conftest import require_postgres, reset_postgres

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
P2P_LIMIT = "500"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


USERS = [
    "alice",
    "bob",
    "frank",
    "gina",
    "hana",
    "ivan",
    "jack",
    "kate",
    "lena",
    "shop",
    "mia",
    "noah",
    "mallory",
    "carol",
    "dan",
    "erin",
    "fay",
    "olga",
    "pete",
    "quinn",
    "rosa",
]
TOKENS = {f"token-of-{user}": user for user in USERS}


def as_(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer token-of-{user}"}


def wallet(user: str) -> str:
    return f"users:{user}:wallet"


@pytest.fixture(scope="module")
def service() -> Iterator[tuple[str, list[str]]]:
    url = require_postgres("example_service")
    reset_postgres(url)
    env = {
        **os.environ,
        "LEDGER_STORE": url,
        "LEDGER_EXAMPLE_P2P_LIMIT": P2P_LIMIT,
        "LEDGER_EXAMPLE_TOKENS": json.dumps(TOKENS),
        "LEDGER_EXAMPLE_MERCHANTS": json.dumps(["shop"]),
    }
    procs: list[subprocess.Popen[bytes]] = []
    bases: list[str] = []
    # Two processes on one store: one on uvicorn's pure-Python loop and parser, one
    # on its standard extras (uvloop, httptools); the tests that spread their requests
    # over both processes meet both.
    for loop, http in (("asyncio", "h11"), ("uvloop", "httptools")):
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
                    "--loop",
                    loop,
                    "--http",
                    http,
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


def post(
    base: str, path: str, body: dict[str, Any], key: str | None = None, *, user: str | None
) -> httpx.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    if user is not None:
        headers.update(as_(user))
    return httpx.post(f"{base}{path}", json=body, headers=headers, timeout=30)


def get(base: str, path: str, user: str | None, **params: Any) -> httpx.Response:
    return httpx.get(f"{base}{path}", headers=as_(user) if user else {}, params=params, timeout=10)


def available(base: str, user: str) -> Decimal:
    response = get(base, f"/accounts/{wallet(user)}", user)
    assert response.status_code == 200, response.text
    assert response.json()["normal"] == "credit"  # the sign convention, said
    return Decimal(response.json()["available"])


def open_wallet(base: str, user: str, amount: str | None = None) -> None:
    opened = post(base, "/accounts", {"id": wallet(user), "currency": "USD"}, user=user)
    assert opened.status_code == 201, opened.text
    if amount is not None:
        r = post(
            base,
            "/deposits",
            {"wallet": wallet(user), "amount": amount, "currency": "USD"},
            f"dep:{user}",
            user=user,
        )
        assert r.status_code == 201, r.text


def pay(sender: str, recipient: str, amount: str, **extra: str) -> dict[str, str]:
    body = {"from": wallet(sender), "to": wallet(recipient), "amount": amount, "currency": "USD"}
    return {**body, **extra}


def test_payment_retry_returns_original_result(service: tuple[str, list[str]]) -> None:
    _, (a, b) = service
    open_wallet(a, "alice", "100.00")
    open_wallet(a, "bob")
    body = pay("alice", "bob", "30.00", note="rent")
    first = post(a, "/payments", body, "pay-1", user="alice")
    assert first.status_code == 201, first.text
    again = post(b, "/payments", body, "pay-1", user="alice")  # the retry, other instance
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert available(a, "alice") == Decimal("70.00")
    other = post(a, "/payments", {**body, "amount": "31.00"}, "pay-1", user="alice")
    assert other.status_code == 409 and other.json()["error"] == "idempotency_conflict"


def test_bad_requests_are_refused_and_change_nothing(service: tuple[str, list[str]]) -> None:
    _, (a, _) = service
    open_wallet(a, "frank", "10.00")
    open_wallet(a, "gina")
    body = pay("frank", "gina", "10.01")
    poor = post(a, "/payments", body, "frank-1", user="frank")
    assert poor.status_code == 422 and poor.json()["error"] == "balance_rule_violated"
    top_up = {"wallet": wallet("frank"), "amount": "5", "currency": "USD"}
    post(a, "/deposits", top_up, "dep:frank:2", user="frank")
    assert post(a, "/payments", body, "frank-1", user="frank").status_code == 422  # stays
    assert post(a, "/payments", body, user="frank").status_code == 400  # no key
    as_float = {**body, "amount": 1.5}
    assert post(a, "/payments", as_float, "frank-2", user="frank").status_code == 422
    extra = post(a, "/payments", {**body, "admin": True}, "frank-6", user="frank")
    assert extra.status_code == 422 and extra.json()["detail"][0]["loc"] == ["body", "admin"]
    assert extra.json()["error"] == "invalid_request" and "admin" in extra.json()["message"]
    # without a known token, 401 before any validation detail
    for path, bad in (("/deposits", {"x": 1}), ("/charges", {}), ("/accounts", {"id": 5})):
        assert post(a, path, bad, "k", user=None).status_code == 401, path
    assert get(a, "/feed", None, limit="abc").status_code == 401
    not_json = httpx.post(
        f"{a}/payments",
        content=b"{not json",
        headers={"Authorization": "Bearer token-of-frank", "Idempotency-Key": "frank-7"},
    )
    assert not_json.status_code == 422
    # A body past the service's limit is not read: 413, with or without a length.
    huge = post(a, "/payments", {**body, "note": "x" * 20_000}, "frank-8", user="frank")
    assert huge.status_code == 413
    headers = {"Authorization": "Bearer token-of-frank", "Idempotency-Key": "frank-9"}
    chunks = (b"{" + b" " * 1024 for _ in range(32))  # no Content-Length: chunked
    streamed = httpx.post(f"{a}/payments", content=chunks, headers=headers, timeout=30)
    assert streamed.status_code == 413
    decimals = post(a, "/payments", {**body, "amount": "1.001"}, "frank-3", user="frank")
    assert decimals.status_code == 400 and decimals.json()["error"] == "invalid_amount"
    negative = post(a, "/payments", {**body, "amount": "-5"}, "frank-5", user="frank")
    assert negative.status_code == 400 and negative.json()["error"] == "invalid_amount"
    nobody = {**body, "to": "users:nobody:wallet"}
    assert post(a, "/payments", nobody, "frank-4", user="frank").status_code == 422
    assert available(a, "frank") == Decimal("15.00")
    assert available(a, "gina") == Decimal("0.00")


def test_callers_touch_only_their_own_accounts(service: tuple[str, list[str]]) -> None:
    _, (a, b) = service
    open_wallet(a, "carol", "50.00")
    open_wallet(a, "mallory", "1.00")
    theft = pay("carol", "mallory", "50.00")
    # someone else's wallet, no token, a wrong token: refused, nothing moved
    stolen = post(a, "/payments", theft, "theft-1", user="mallory")
    assert stolen.status_code == 403 and stolen.json()["error"] == "forbidden"
    assert post(b, "/payments", theft, "theft-2", user=None).status_code == 401
    forged = httpx.post(
        f"{a}/payments",
        json=theft,
        headers={"Idempotency-Key": "theft-3", "Authorization": "Bearer token-of-carol!"},
        timeout=10,
    )
    assert forged.status_code == 401
    # reads of another user's account and statement, and opening accounts in their name
    assert get(a, f"/accounts/{wallet('carol')}", "mallory").status_code == 403
    assert get(a, f"/accounts/{wallet('carol')}/statement", "mallory").status_code == 403
    assert get(a, f"/accounts/{wallet('carol')}", None).status_code == 401
    squat = post(a, "/accounts", {"id": "users:carol:savings", "currency": "USD"}, user="mallory")
    assert squat.status_code == 403
    deposit = {"wallet": wallet("carol"), "amount": "5", "currency": "USD"}
    assert post(a, "/deposits", deposit, "dep-x", user="mallory").status_code == 403
    charge = {
        "customer": wallet("carol"),
        "merchant": wallet("mallory"),
        "amount": "9",
        "currency": "USD",
    }
    assert post(a, "/charges", charge, "charge-x", user="mallory").status_code == 403
    assert available(a, "carol") == Decimal("50.00")
    assert available(a, "mallory") == Decimal("1.00")
    # and the owner may
    assert (
        post(a, "/payments", pay("carol", "mallory", "2.00"), "gift", user="carol").status_code
        == 201
    )
    own = get(a, f"/accounts/{wallet('carol')}/statement", "carol")
    assert own.status_code == 200 or own.status_code == 404  # the read model may lag


def test_concurrent_duplicates_apply_once(service: tuple[str, list[str]]) -> None:
    _, bases = service
    open_wallet(bases[0], "hana", "100.00")
    open_wallet(bases[0], "ivan")
    body = pay("hana", "ivan", "7.00")
    with ThreadPoolExecutor(16) as pool:
        responses = list(
            pool.map(
                lambda i: post(bases[i % 2], "/payments", body, "dup-1", user="hana"), range(32)
            )
        )
    codes = sorted(r.status_code for r in responses)
    assert codes.count(201) == 1 and codes.count(200) == 31, codes
    assert len({r.json()["id"] for r in responses}) == 1
    assert available(bases[1], "ivan") == Decimal("7.00")


def test_racing_payments_never_overdraw(service: tuple[str, list[str]]) -> None:
    _, bases = service
    open_wallet(bases[0], "jack", "100.00")
    open_wallet(bases[0], "kate")
    body = pay("jack", "kate", "5.00")
    with ThreadPoolExecutor(12) as pool:
        responses = list(
            pool.map(
                lambda i: post(bases[i % 2], "/payments", body, f"race-{i}", user="jack"),
                range(30),
            )
        )
    codes = [r.status_code for r in responses]
    assert codes.count(201) == 20 and codes.count(422) == 10, codes
    assert available(bases[0], "jack") == Decimal("0.00")
    assert available(bases[1], "kate") == Decimal("100.00")


def test_concurrent_refunds_never_exceed_the_charge(service: tuple[str, list[str]]) -> None:
    _, bases = service
    open_wallet(bases[0], "lena", "80.00")
    open_wallet(bases[0], "shop")
    charged = post(
        bases[0],
        "/charges",
        {
            "customer": wallet("lena"),
            "merchant": wallet("shop"),
            "amount": "50.00",
            "currency": "USD",
            "fee": "2.00",
        },
        "charge-1",
        user="lena",
    )
    assert charged.status_code == 201, charged.text
    path = f"/charges/{charged.json()['id']}/refunds"
    # only the merchant refunds: not the customer, not a stranger
    assert post(bases[0], path, {"amount": "50.00"}, "rf-lena", user="lena").status_code == 403
    assert post(bases[1], path, {"amount": "1.00"}, "rf-mal", user="mallory").status_code == 403
    with ThreadPoolExecutor(8) as pool:
        responses = list(
            pool.map(
                lambda i: post(bases[i % 2], path, {"amount": "10.00"}, f"rf-{i}", user="shop"),
                range(8),
            )
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
    body = pay("mia", "noah", "600.00")
    vetoed = post(a, "/payments", body, "big-1", user="mia")
    assert vetoed.status_code == 403 and vetoed.json()["error"] == "vetoed"
    assert post(b, "/payments", body, "big-1", user="mia").status_code == 403
    small = {**body, "amount": "400.00"}
    assert post(b, "/payments", small, "small-1", user="mia").status_code == 201
    assert available(a, "noah") == Decimal("400.00")


def feed_notes(base: str, user: str) -> list[str]:
    notes: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = get(base, "/feed", user, **params)
        assert page.status_code == 200, page.text
        body = page.json()
        notes += [item["note"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return notes


def test_feed_shows_what_the_viewer_may_see(service: tuple[str, list[str]]) -> None:
    _, (a, b) = service
    open_wallet(a, "dan", "100.00")
    open_wallet(a, "erin")
    open_wallet(a, "fay")
    asked = post(a, "/friends/erin", {}, user="fay")
    assert asked.status_code == 200 and asked.json()["status"] == "requested"
    accepted = post(b, "/friends/fay", {}, user="erin")  # fay <-> erin once both asked
    assert accepted.status_code == 200 and accepted.json()["status"] == "friends"
    # asking alone shows nothing: mallory asks dan, dan never asks back
    assert post(a, "/friends/dan", {}, user="mallory").json()["status"] == "requested"
    assert post(a, "/friends/nobody-here", {}, user="mallory").status_code == 404
    for key, visibility in (("pub", "public"), ("fr", "friends"), ("priv", "private")):
        body = pay("dan", "erin", "1.00", note=f"dan-{key}", visibility=visibility)
        assert post(a, "/payments", body, f"feed-{key}", user="dan").status_code == 201
    mine = {"dan-pub", "dan-fr", "dan-priv"}
    deadline = time.monotonic() + 20
    while not mine <= set(feed_notes(b, "dan")):  # the read model follows the log
        assert time.monotonic() < deadline, feed_notes(b, "dan")
        time.sleep(0.1)
    assert mine <= set(feed_notes(a, "erin"))  # a member of all three
    fay = set(feed_notes(b, "fay"))  # a friend of a member: public and friends-only
    assert "dan-pub" in fay and "dan-fr" in fay and "dan-priv" not in fay
    stranger = set(feed_notes(a, "mallory"))
    assert "dan-pub" in stranger and not {"dan-fr", "dan-priv"} & stranger
    assert get(a, "/feed", None).status_code == 401
    for cursor in ("not-a-cursor", "\u00b2", "\u0661", "9" * 20):
        assert get(a, "/feed", "fay", cursor=cursor).status_code == 400
    statement = get(a, f"/accounts/{wallet('erin')}/statement", "erin")
    assert statement.status_code == 200, statement.text
    assert statement.json()["closing"] == "3.00"
    assert statement.json()["normal"] == "credit"  # the sign convention, said
    path = f"/accounts/{wallet('erin')}/statement"
    for window in (
        {"from": "2030-01-01T00:00:00Z", "to": "2020-01-01T00:00:00Z"},
        {"to": "0001-01-01T00:00:00+00:00"},
        {"from": "0001-01-01T00:00:00+14:00"},
        {"to": "9999-12-31T23:59:59-14:00"},
    ):
        assert get(a, path, "erin", **window).status_code == 400, window


def test_money_goes_to_users_and_charges_to_registered_merchants(
    service: tuple[str, list[str]],
) -> None:
    _, (a, _b) = service
    open_wallet(a, "olga", "100.00")
    open_wallet(a, "pete")
    # not into the platform's own accounts
    for target in ("platform:bank:ach:USD", "platform:revenue:fees:USD"):
        body = {**pay("olga", "pete", "5.00"), "to": target}
        assert post(a, "/payments", body, f"plat-{target}", user="olga").status_code == 403
    # a charge only to a registered merchant: hana is not one (no way around the P2P limit)
    charge = {
        "customer": wallet("olga"),
        "merchant": wallet("pete"),
        "amount": "600",
        "currency": "USD",
    }
    assert post(a, "/charges", charge, "charge-p2p", user="olga").status_code == 403
    # a payment's entry is no charge to refund, even by its recipient
    paid = post(a, "/payments", pay("olga", "pete", "5.00"), "gift-1", user="olga")
    assert paid.status_code == 201
    refund = post(a, f"/charges/{paid.json()['id']}/refunds", {}, "rf-gift", user="pete")
    assert refund.status_code == 403
    assert available(a, "olga") == Decimal("95.00") and available(a, "pete") == Decimal("5.00")


def test_idempotency_keys_are_scoped_to_their_user(service: tuple[str, list[str]]) -> None:
    _, (a, _b) = service
    open_wallet(a, "quinn", "50.00")
    open_wallet(a, "rosa", "50.00")
    # the same key for two users: two payments, neither blocks nor replays the other
    assert (
        post(a, "/payments", pay("quinn", "rosa", "1.00"), "same-key", user="quinn").status_code
        == 201
    )
    assert (
        post(a, "/payments", pay("rosa", "quinn", "2.00"), "same-key", user="rosa").status_code
        == 201
    )
    # a user cannot take the key of another's deposit confirmation first
    assert (
        post(
            a, "/payments", pay("quinn", "rosa", "1.00"), "dep-j:confirm", user="quinn"
        ).status_code
        == 201
    )
    deposit = {"wallet": wallet("rosa"), "amount": "3.00", "currency": "USD"}
    assert post(a, "/deposits", deposit, "dep-j", user="rosa").status_code == 201
    assert available(a, "rosa") == Decimal("50.00") + 1 - 2 + 1 + 3


def test_books_audit_clean_after_the_run(service: tuple[str, list[str]]) -> None:
    url, _ = service
    with Ledger.open(url) as books:
        report = audit(books.store)
    assert report.clean, report.findings

"""An example payment service over HTTP, on the ledger (FastAPI, asyncio, PostgreSQL).

Run it (the store URL and the users' tokens come from the environment)::

    LEDGER_STORE=postgresql://... \\
    LEDGER_EXAMPLE_TOKENS='{"secret-token-of-alice": "alice", "secret-token-of-bob": "bob"}' \\
        uvicorn app:app --app-dir examples/payment_service

Every request names its user with ``Authorization: Bearer <token>`` (``401`` without a
known token). A user owns the accounts under ``users:<user>:`` and may move money only
out of them and read only them (``403`` otherwise, nothing moved). Money goes only to
users' accounts (never the platform's), and charges only to the accounts of merchants
the platform registered (``LEDGER_EXAMPLE_MERCHANTS``, a JSON list of users), so a
charge cannot pass a P2P payment by the P2P limit. The activity feed shows what the
user may see (their own items, public ones, friends-only ones of friends); a friendship
exists once both users asked for it. The endpoints are ``async``: writes go through an
:class:`~ledger.AsyncLedger`, so the requests in flight share group commits.

Every money write (deposits, payments, charges, refunds) takes an ``Idempotency-Key``
header, scoped to its user (two users' keys never meet; opening an account is
idempotent by the account's id, asking for a friendship by the pair): the same key
and body return the original result (``200`` with ``Idempotent-Replayed: true``) and
apply nothing again; the same key with another body is ``409``. Amounts are decimal
strings (``"12.50"``), never JSON numbers. ``LEDGER_EXAMPLE_P2P_LIMIT`` (optional)
sets a risk policy that vetoes P2P payments above that amount.

=================================  ============================================================
``POST /accounts``                 open one of the caller's accounts (``users:<user>:...``)
``GET /accounts/{id}``             balances of one of the caller's accounts
``GET /accounts/{id}/statement``   statement of one of the caller's accounts (``from``, ``to``)
``POST /deposits``                 fund the caller's wallet from the bank rail
``POST /payments``                 P2P payment out of the caller's wallet
``POST /charges``                  charge the caller's wallet for a merchant, with a fee
``POST /charges/{id}/refunds``     refund (part of) a charge: the merchant's owner only
``POST /friends/{user}``           ask a user for friendship (friends once both asked)
``GET /feed``                      the caller's activity feed (``limit``, ``cursor``)
=================================  ============================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import os
import queue
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ledger import AsyncLedger, LedgerError, Outcome, payments
from ledger.adapters.crypto import keyring_from_env
from ledger.adapters.logging import configure_logging
from ledger.assets import plain
from ledger.errors import (
    AccountExists,
    CommandRejected,
    ConcurrencyConflict,
    IdempotencyConflict,
    InvalidCommand,
    Overloaded,
    PaymentVetoed,
    StoreError,
)
from ledger.projections import BalancesView, FeedView, ProjectionRunner, ViewStore, statement
from ledger.risk import RiskCheck

BANK = "platform:bank:ach"
FEES = "platform:revenue:fees"
CURRENCY_ACCOUNTS = ("USD", "EUR")
#: Read-model connections for the feed and statement endpoints.
VIEW_CONNECTIONS = 4
T = TypeVar("T")


def p2p_limit_policy(limit: Decimal) -> Callable[[RiskCheck], str | None]:
    """Veto P2P payments above ``limit``."""

    def policy(check: RiskCheck) -> str | None:
        if getattr(check.command, "metadata", {}).get("flow") != "p2p":
            return None
        largest = max(abs(Decimal(amount)) for _, amount, _ in check.legs)
        return f"P2P payments above {limit} need review" if largest > limit else None

    return policy


def load_tokens(text: str) -> dict[bytes, str]:
    """Tokens from ``LEDGER_EXAMPLE_TOKENS`` (a JSON object of token -> user), kept by
    their SHA-256 digest: a request's token is found by the digest of what it sent, so
    the lookup's timing tells nothing about the tokens, and none is kept in clear."""
    tokens = json.loads(text or "{}")
    if not isinstance(tokens, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k and v for k, v in tokens.items()
    ):
        raise ValueError("LEDGER_EXAMPLE_TOKENS must be a JSON object of token -> user")
    return {_digest(token): user for token, user in tokens.items()}


def load_merchants(text: str) -> frozenset[str]:
    """The users registered as merchants (``LEDGER_EXAMPLE_MERCHANTS``, a JSON list)."""
    merchants = json.loads(text or "[]")
    if not isinstance(merchants, list) or not all(isinstance(m, str) and m for m in merchants):
        raise ValueError("LEDGER_EXAMPLE_MERCHANTS must be a JSON list of users")
    return frozenset(merchants)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The service's own log output: the ledger's records as JSON lines on stderr.
    configure_logging(os.environ.get("LEDGER_EXAMPLE_LOG_LEVEL", "WARNING"))
    limit = os.environ.get("LEDGER_EXAMPLE_P2P_LIMIT")
    risk = None if limit is None else p2p_limit_policy(Decimal(limit))
    app.state.tokens = load_tokens(os.environ.get("LEDGER_EXAMPLE_TOKENS", ""))
    app.state.merchants = load_merchants(os.environ.get("LEDGER_EXAMPLE_MERCHANTS", ""))
    # LEDGER_KEYS (optional) encrypts notes and metadata at rest (see ledger.adapters.crypto).
    books = await AsyncLedger.open(
        os.environ["LEDGER_STORE"], risk=risk, keyring=keyring_from_env()
    )
    for currency in CURRENCY_ACCOUNTS:
        await _open_quietly(books, f"{BANK}:{currency}", currency, normal="debit")
        await _open_quietly(books, f"{FEES}:{currency}", currency)
    # The read models (feed, statements) follow the log in a thread of their own.
    runner = ProjectionRunner.for_ledger(books.sync, [BalancesView(), FeedView()])
    stop = threading.Event()
    follower = threading.Thread(target=runner.follow, args=(stop,), kwargs={"poll_s": 0.05})
    if os.environ.get("LEDGER_EXAMPLE_FOLLOW", "1") == "1":
        follower.start()
    # Requests read the views on connections of their own (the runner's connection
    # belongs to its thread).
    app.state.views = ViewPool(books.sync.open_views, VIEW_CONNECTIONS)
    app.state.books, app.state.runner = books, runner
    if os.environ.get("LEDGER_EXAMPLE_GC_TUNING", "1") == "1":
        # The service's own choices (the ledger never touches the collector behind its
        # host's back), made once its startup objects exist. gc.freeze() moves them out
        # of the collector's reach, so each full collection walks only what requests
        # made (payments p99 139 -> 69 ms). A young generation of 50,000 allocations
        # instead of 700: a request's objects live until its group commits, so at 700
        # nearly every collection found the requests in flight alive and promoted them
        # to older generations, to be walked again there; at 50,000 most have died by
        # the time it runs (measured with benchmarks.http_service: collections took 4-8%
        # of the web process, now under 1%).
        gc.freeze()
        gc.set_threshold(50_000, 10, 10)
    try:
        yield
    finally:
        stop.set()
        if follower.is_alive():
            await asyncio.to_thread(follower.join)
        runner.close()
        app.state.views.close()
        await books.close()


class ViewPool:
    """A few read-model connections for the request handlers, one per reader at a time."""

    def __init__(self, connect: Callable[[], ViewStore], size: int) -> None:
        self._free: queue.Queue[ViewStore] = queue.Queue()
        self._all = [connect() for _ in range(size)]
        for views in self._all:
            self._free.put(views)

    def run(self, fn: Callable[[ViewStore], T]) -> T:
        """Call ``fn`` with a connection of the pool (blocking: run it in a thread)."""
        views = self._free.get()
        try:
            return fn(views)
        finally:
            self._free.put(views)

    def close(self) -> None:
        for views in self._all:
            views.close()


async def _open_quietly(books: AsyncLedger, account: str, currency: str, **kw: Any) -> None:
    with contextlib.suppress(AccountExists):  # another instance opened it first
        await books.open_account(account, currency, **kw)


#: The largest request body the service reads (413 beyond it, with or without a
#: Content-Length): every body here fits in a few KiB (a note is at most 1,024
#: characters, 6 bytes each when escaped), and a server that reads whatever it is sent
#: can be made to hold a gigabyte per request.
BODY_BYTES_MAX = 16 * 1024

app = FastAPI(title="Example payment service", lifespan=lifespan, max_body_size=BODY_BYTES_MAX)


class Forbidden(Exception):
    """The caller may not touch this account."""


# -- authentication and authorization ------------------------------------------------------


def caller(request: Request) -> str:
    """The user named by the request's bearer token (401 without a known one)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        tokens: dict[bytes, str] = request.app.state.tokens
        user = tokens.get(_digest(token))
        if user is not None:
            return user
    raise Unauthenticated


class Unauthenticated(Exception):
    """No known bearer token."""


#: The authenticated user, as a dependency: FastAPI runs it before it validates the
#: endpoint's body and query, so a caller without a known token gets 401, never the
#: validation details of a 422.
Caller = Annotated[str, Depends(caller)]


def idempotency_key(request: Request, user: str) -> str:
    """The request's ``Idempotency-Key`` header (400 without one), scoped to ``user``:
    one user's keys can neither replay nor block another's, and the service's own
    keys (``service:...``) are out of every user's reach."""
    key = request.headers.get("idempotency-key")
    if not key:
        raise MissingKey
    return f"user:{user}:{key}"


def owner_of(user: str) -> str:
    return f"user:{user}"


def own(user: str, account: str) -> str:
    """``account`` if it is one of ``user``'s accounts, else Forbidden."""
    if not account.startswith(f"users:{user}:"):
        raise Forbidden
    return account


def user_account(account: str) -> str:
    """``account`` if it is some user's account (money goes to users, never to the
    platform's own accounts, which only its flows move), else Forbidden."""
    if not account.startswith("users:") or account.count(":") < 2:
        raise Forbidden
    return account


def merchant_account(request: Request, account: str) -> str:
    """``account`` if it belongs to a registered merchant, else Forbidden."""
    owner = user_account(account).split(":", 2)[1]
    if owner not in request.app.state.merchants:
        raise Forbidden
    return account


@app.exception_handler(Unauthenticated)
async def _unauthenticated(request: Request, exc: Unauthenticated) -> JSONResponse:
    return JSONResponse(
        {"error": "unauthenticated", "message": "send Authorization: Bearer <token>"},
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


@app.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 in the service's error shape (``error``, ``message``), with pydantic's
    problems in ``detail`` (location, message; never the input echoed back)."""
    detail = [{"type": e["type"], "loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
    first = detail[0] if detail else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(part) for part in first["loc"])
    return JSONResponse(
        {"error": "invalid_request", "message": f"{where}: {first['msg']}", "detail": detail},
        status_code=422,
    )


@app.exception_handler(Forbidden)
async def _forbidden(request: Request, exc: Forbidden) -> JSONResponse:
    return _error(403, "forbidden", "that account is not one of yours")


# -- bodies ---------------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")


class NewAccount(_Body):
    id: str
    currency: str


class Deposit(_Body):
    wallet: str
    amount: str
    currency: str


class Payment(_Body):
    sender: str = Field(alias="from")
    recipient: str = Field(alias="to")
    amount: str
    currency: str
    note: str = ""
    visibility: Literal["public", "friends", "private"] = "private"


class Charge(_Body):
    customer: str
    merchant: str
    amount: str
    currency: str
    fee: str = "0"


class Refund(_Body):
    amount: str | None = None


B = TypeVar("B", bound=_Body)


def _body_schema(model: type[_Body]) -> dict[str, Any]:
    """The OpenAPI request body of an endpoint that parses ``model`` itself."""
    schema = model.model_json_schema(by_alias=True)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


async def _parsed(request: Request, model: type[B]) -> B:
    """The request's JSON body as ``model`` (422 with pydantic's errors otherwise)."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as e:
        errors = [
            {"type": err["type"], "loc": ("body", *err["loc"]), "msg": err["msg"]}
            for err in e.errors(include_url=False, include_input=False)
        ]
        raise RequestValidationError(errors) from None


def _books(request: Request) -> AsyncLedger:
    books: AsyncLedger = request.app.state.books
    return books


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


#: HTTP status per error family, most specific first.
_STATUS: tuple[tuple[type[LedgerError], int], ...] = (
    (IdempotencyConflict, 409),
    (ConcurrencyConflict, 503),
    (Overloaded, 503),
    (PaymentVetoed, 403),
    (CommandRejected, 422),
    (InvalidCommand, 400),
    (StoreError, 503),
    (LedgerError, 500),
)


async def _respond(run: Awaitable[Outcome]) -> JSONResponse:
    """Await a ledger write and map its outcome or error to HTTP."""
    try:
        outcome = await run
    except LedgerError as e:
        status = next(code for cls, code in _STATUS if isinstance(e, cls))
        return _error(status, e.code, e.message)
    body = {
        "id": None if outcome.entry_id is None else str(outcome.entry_id),
        "status": outcome.status,
        "kind": outcome.kind,
    }
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    return JSONResponse(body, status_code=200 if outcome.replayed else 201, headers=headers)


class MissingKey(Exception):
    """A write without an Idempotency-Key header."""


@app.exception_handler(MissingKey)
async def _missing_key(request: Request, exc: MissingKey) -> JSONResponse:
    return _error(400, "missing_idempotency_key", "send an Idempotency-Key header")


# -- endpoints ------------------------------------------------------------------------------------


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/accounts")
async def open_account(user: Caller, body: NewAccount, request: Request) -> JSONResponse:
    account = own(user, body.id)
    return await _respond(
        _books(request).open_account(account, body.currency, min_balance="0", owner=owner_of(user))
    )


@app.get("/accounts/{account}")
async def get_account(account: str, request: Request) -> JSONResponse:
    user = caller(request)
    try:
        b = await _books(request).balance(own(user, account))
    except LedgerError as e:
        return _error(404, e.code, e.message)
    return JSONResponse(
        {
            "id": b.account,
            "currency": b.asset,
            # The amounts' sign convention: as the account's normal side sees them (a
            # wallet, credit-normal, shows what the user holds as positive).
            "normal": b.normal,
            "version": b.version,
            "posted": plain(b.posted),
            "available": plain(b.available),
            "pending_in": plain(b.pending_in),
            "pending_out": plain(b.pending_out),
        }
    )


@app.get("/accounts/{account}/statement")
async def get_statement(
    user: Caller,
    account: str,
    request: Request,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
) -> JSONResponse:
    """Opening balance, lines and closing balance for ``[from, to)`` (RFC 3339 with a
    zone; default: the last 30 days). Amounts as the account's normal side sees them."""
    own(user, account)
    for moment in (start, end):
        if moment is not None and moment.tzinfo is None:
            return _error(400, "invalid_command", "times need a zone (RFC 3339)")
    try:
        until = end or datetime.now(UTC) + timedelta(seconds=1)
        since = start or until - timedelta(days=30)
    except OverflowError:
        return _error(400, "invalid_command", "times are out of range (years 1 to 9999)")

    def read(views: ViewStore) -> Any:
        with views.snapshot() as w:
            return statement(w, account, since, until)

    try:
        found = await asyncio.to_thread(request.app.state.views.run, read)
    except InvalidCommand as e:  # out of range in UTC, or starting after it ends
        return _error(400, e.code, e.message)
    if found is None:
        return _error(404, "unknown_account", f"account {account!r} has no statement yet")
    try:
        normal = (await _books(request).balance(account)).normal
    except LedgerError as e:
        return _error(404, e.code, e.message)
    return JSONResponse(
        {
            "account": found.account,
            "currency": found.asset,
            "normal": normal,
            "from": found.start.isoformat(),
            "to": found.end.isoformat(),
            "opening": plain(found.opening),
            "closing": plain(found.closing),
            "lines": [
                {**asdict(line), "amount": plain(line.amount), "running": plain(line.running)}
                for line in found.lines
            ],
        }
    )


@app.post("/deposits")
async def deposit(user: Caller, body: Deposit, request: Request) -> Any:
    """A deposit from the bank rail into the caller's wallet, confirmed at once (a real
    service confirms it when the bank's webhook arrives)."""
    key = idempotency_key(request, user)
    books, wallet = _books(request), own(user, body.wallet)

    async def run() -> Outcome:
        held = await payments.start_deposit(
            books,
            key,
            wallet=wallet,
            rail=f"{BANK}:{body.currency}",
            amount=body.amount,
            asset=body.currency,
        )
        assert held.entry_id is not None
        # The confirmation's key is the service's, derived from the hold: no user can
        # take it first, and a retry of the deposit confirms the same hold once.
        await payments.confirm_bank_transfer(
            books, f"service:confirm:{held.entry_id}", held.entry_id
        )
        return held

    return await _respond(run())


@app.post("/payments", openapi_extra=_body_schema(Payment))
async def create_payment(request: Request) -> JSONResponse:
    """A P2P payment. The body is validated by pydantic straight from its JSON bytes
    (``model_validate_json``, strict), a third cheaper than FastAPI's body parameter."""
    user = caller(request)
    key = idempotency_key(request, user)
    body = await _parsed(request, Payment)
    return await _respond(
        payments.send(
            _books(request),
            key,
            sender=own(user, body.sender),
            recipient=user_account(body.recipient),
            amount=body.amount,
            asset=body.currency,
            note=body.note,
            visibility=body.visibility,
        )
    )


@app.post("/charges")
async def create_charge(user: Caller, body: Charge, request: Request) -> JSONResponse:
    key = idempotency_key(request, user)
    return await _respond(
        payments.charge(
            _books(request),
            key,
            customer=own(user, body.customer),
            merchant=merchant_account(request, body.merchant),
            amount=body.amount,
            asset=body.currency,
            fee=body.fee,
            platform=f"{FEES}:{body.currency}",
        )
    )


@app.post("/charges/{charge_id}/refunds")
async def create_refund(
    user: Caller, charge_id: uuid.UUID, body: Refund, request: Request
) -> JSONResponse:
    """Only the owner of the charge's merchant account may refund it."""
    key = idempotency_key(request, user)
    books = _books(request)
    charged = await books.entry(charge_id)
    if charged is None or charged.kind != "posted":
        return _error(404, "entry_not_found", f"no charge with id {charge_id}")
    # The merchant's account is the one the charge credited (the platform's fee
    # account is no user's); only a registered merchant's entries are charges.
    if user not in request.app.state.merchants or not any(
        leg.amount < 0 and leg.account.startswith(f"users:{user}:") for leg in charged.legs
    ):
        raise Forbidden
    return await _respond(payments.refund(books, key, charge_id, amount=body.amount))


@app.post("/friends/{other}")
async def befriend(other: str, request: Request) -> JSONResponse:
    """Ask ``other`` for friendship; it exists (friends-only items become visible both
    ways) once both asked. Asking alone shows nothing of ``other``'s."""
    user = caller(request)
    if other == user or other not in request.app.state.tokens.values():
        return _error(404, "unknown_user", f"no user {other!r} to befriend")

    def write(views: ViewStore) -> bool:
        with views.transaction() as w:
            return FeedView.offer_friendship(w, owner_of(user), owner_of(other))

    mutual = await asyncio.to_thread(request.app.state.views.run, write)
    return JSONResponse({"status": "friends" if mutual else "requested"})


@app.get("/feed")
async def feed(
    user: Caller, request: Request, limit: int = 20, cursor: str | None = None
) -> JSONResponse:
    """The caller's activity feed, newest first; ``next_cursor`` fetches the next page."""

    def read(views: ViewStore) -> Any:
        with views.snapshot() as w:
            return FeedView.feed(w, owner_of(user), limit=limit, cursor=cursor)

    try:
        page = await asyncio.to_thread(request.app.state.views.run, read)
    except InvalidCommand as e:
        return _error(400, e.code, e.message)
    return JSONResponse(
        {
            "items": [{**asdict(item), "amount": plain(item.amount)} for item in page.items],
            "next_cursor": page.next_cursor,
        }
    )

"""An example payment service over HTTP, on the ledger (FastAPI + PostgreSQL).

Run it (the store URL comes from ``LEDGER_STORE``)::

    LEDGER_STORE=postgresql://... uvicorn app:app --app-dir examples/payment_service

Every write takes an ``Idempotency-Key`` header: the same key and body return the
original result (``200`` with ``Idempotent-Replayed: true``) and apply nothing again;
the same key with another body is ``409``. Amounts are decimal strings (``"12.50"``),
never JSON numbers. ``LEDGER_EXAMPLE_P2P_LIMIT`` (optional) sets a risk policy that
vetoes P2P payments above that amount.

=======================  =========================================================
``POST /accounts``       open a wallet or merchant account
``GET /accounts/{id}``   balances of an account
``POST /deposits``       fund a wallet from the bank rail (pending, then confirmed)
``POST /payments``       P2P payment between wallets (instant)
``POST /charges``        merchant charge with a platform fee
``POST /charges/{id}/refunds``  refund (part of) a charge
=======================  =========================================================
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ledger import Ledger, LedgerError, Outcome, payments
from ledger.errors import (
    AccountExists,
    CommandRejected,
    ConcurrencyConflict,
    IdempotencyConflict,
    InvalidCommand,
    PaymentVetoed,
)
from ledger.risk import RiskCheck

BANK = "platform:bank:ach"
FEES = "platform:revenue:fees"
CURRENCY_ACCOUNTS = ("USD", "EUR")


def p2p_limit_policy(limit: Decimal) -> Callable[[RiskCheck], str | None]:
    """Veto P2P payments above ``limit``."""

    def policy(check: RiskCheck) -> str | None:
        if getattr(check.command, "metadata", {}).get("flow") != "p2p":
            return None
        largest = max(abs(Decimal(amount)) for _, amount, _ in check.legs)
        return f"P2P payments above {limit} need review" if largest > limit else None

    return policy


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    limit = os.environ.get("LEDGER_EXAMPLE_P2P_LIMIT")
    risk = None if limit is None else p2p_limit_policy(Decimal(limit))
    books = Ledger.open(os.environ["LEDGER_STORE"], risk=risk)
    for currency in CURRENCY_ACCOUNTS:
        _open_quietly(books, f"{BANK}:{currency}", currency, normal="debit")
        _open_quietly(books, f"{FEES}:{currency}", currency)
    app.state.books = books
    try:
        yield
    finally:
        books.close()


def _open_quietly(books: Ledger, account: str, currency: str, **kw: Any) -> None:
    with contextlib.suppress(AccountExists):  # another instance opened it first
        books.open_account(account, currency, **kw)


app = FastAPI(title="Example payment service", lifespan=lifespan)
Key = Annotated[str | None, Header(alias="Idempotency-Key")]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")


class NewAccount(_Body):
    id: str
    currency: str
    owner: str | None = None
    kind: Literal["wallet", "merchant"] = "wallet"


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


def _books(request: Request) -> Ledger:
    books: Ledger = request.app.state.books
    return books


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


#: HTTP status per error family, most specific first.
_STATUS: tuple[tuple[type[LedgerError], int], ...] = (
    (IdempotencyConflict, 409),
    (ConcurrencyConflict, 503),
    (PaymentVetoed, 403),
    (CommandRejected, 422),
    (InvalidCommand, 400),
    (LedgerError, 500),
)


def _respond(run: Callable[[], Outcome]) -> JSONResponse:
    """Run a ledger write and map its outcome or error to HTTP."""
    try:
        outcome = run()
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


def _need_key(key: str | None) -> JSONResponse | None:
    if not key:
        return _error(400, "missing_idempotency_key", "send an Idempotency-Key header")
    return None


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/accounts")
def open_account(body: NewAccount, request: Request) -> JSONResponse:
    books = _books(request)
    return _respond(
        lambda: books.open_account(body.id, body.currency, min_balance="0", owner=body.owner)
    )


@app.get("/accounts/{account}")
def get_account(account: str, request: Request) -> JSONResponse:
    try:
        b = _books(request).balance(account)
    except LedgerError as e:
        return _error(404, e.code, e.message)
    return JSONResponse(
        {
            "id": b.account,
            "currency": b.asset,
            "version": b.version,
            "posted": str(b.posted),
            "available": str(b.available),
            "pending_in": str(b.pending_in),
            "pending_out": str(b.pending_out),
        }
    )


@app.post("/deposits")
def deposit(body: Deposit, request: Request, idempotency_key: Key = None) -> JSONResponse:
    """A deposit from the bank rail, confirmed at once (a real service confirms it
    when the bank's webhook arrives)."""
    if (missing := _need_key(idempotency_key)) is not None:
        return missing
    books, key = _books(request), str(idempotency_key)

    def run() -> Outcome:
        held = payments.start_deposit(
            books,
            key,
            wallet=body.wallet,
            rail=f"{BANK}:{body.currency}",
            amount=body.amount,
            asset=body.currency,
        )
        assert held.entry_id is not None
        payments.confirm_bank_transfer(books, f"{key}:confirm", held.entry_id)
        return held

    return _respond(run)


@app.post("/payments")
def create_payment(body: Payment, request: Request, idempotency_key: Key = None) -> JSONResponse:
    if (missing := _need_key(idempotency_key)) is not None:
        return missing
    books = _books(request)
    return _respond(
        lambda: payments.send(
            books,
            str(idempotency_key),
            sender=body.sender,
            recipient=body.recipient,
            amount=body.amount,
            asset=body.currency,
            note=body.note,
            visibility=body.visibility,
        )
    )


@app.post("/charges")
def create_charge(body: Charge, request: Request, idempotency_key: Key = None) -> JSONResponse:
    if (missing := _need_key(idempotency_key)) is not None:
        return missing
    books = _books(request)
    return _respond(
        lambda: payments.charge(
            books,
            str(idempotency_key),
            customer=body.customer,
            merchant=body.merchant,
            amount=body.amount,
            asset=body.currency,
            fee=body.fee,
            platform=f"{FEES}:{body.currency}",
        )
    )


@app.post("/charges/{charge_id}/refunds")
def create_refund(
    charge_id: uuid.UUID, body: Refund, request: Request, idempotency_key: Key = None
) -> JSONResponse:
    if (missing := _need_key(idempotency_key)) is not None:
        return missing
    books = _books(request)
    return _respond(
        lambda: payments.refund(books, str(idempotency_key), charge_id, amount=body.amount)
    )

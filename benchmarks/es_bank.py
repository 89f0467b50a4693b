"""The eventsourcing library's bank-account pattern, as a baseline (not our design)."""

from __future__ import annotations

import uuid

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

ACCOUNTS = 10_000
FUNDING_MINOR = 1_000_000


class BankAccount(Aggregate):
    """An account aggregate: one event per debit or credit."""

    @event("Opened")
    def __init__(self, number: int, balance: int) -> None:
        self.number = number
        self.balance = balance

    @event("Debited")
    def debit(self, amount: int) -> None:
        self.balance -= amount

    @event("Credited")
    def credit(self, amount: int) -> None:
        self.balance += amount

    @staticmethod
    def create_id(number: int) -> uuid.UUID:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"acc:{number}")


class Bank(Application[uuid.UUID]):
    """Two aggregates saved together per transfer (one transaction)."""

    env = {"AGGREGATE_CACHE_MAXSIZE": "20000"}  # noqa: RUF012

    def open(self) -> None:
        for start in range(0, ACCOUNTS, 1000):
            stop = min(ACCOUNTS, start + 1000)
            self.save(*[BankAccount(i, FUNDING_MINOR) for i in range(start, stop)])

    def transfer(self, a: int, b: int, amount: int) -> None:
        src = self.repository.get(BankAccount.create_id(a))
        dst = self.repository.get(BankAccount.create_id(b))
        if src.balance < amount:
            return
        src.debit(amount)
        dst.credit(amount)
        self.save(src, dst)

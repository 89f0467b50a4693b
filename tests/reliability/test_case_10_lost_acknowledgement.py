"""Reliability case 10, lost acknowledgement: the connection to PostgreSQL is cut right
after the server executed COMMIT, before the client hears of it (a TCP proxy in the
test drops the server's reply). The ledger's retry, and a caller's retry with the same
key, return the original result; exactly one entry exists."""

from __future__ import annotations

import contextlib
import socket
import threading
from decimal import Decimal
from urllib.parse import urlsplit

import pytest

from ledger import Ledger
from ledger.model import entry_id_for_key
from tests.conftest import require_postgres, reset_postgres

pytestmark = pytest.mark.postgres


class CommitCutter:
    """A TCP proxy to PostgreSQL. When armed with a marker, it forwards the next client
    message that contains it to the server, then closes both sides instead of
    forwarding the server's answer. The marker is text of the write's own data (a key,
    which the append's parameters carry): the append is one statement that commits on
    its own, so the transaction is committed and its acknowledgement lost."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed = threading.Event()
        self.marker = b""
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            link = {"cut": False}
            threading.Thread(target=self._up, args=(client, server, link), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, link), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket, link: dict[str, bool]) -> None:
        try:
            while data := client.recv(65536):
                if self.armed.is_set() and self.marker in data:
                    self.armed.clear()
                    link["cut"] = True
                server.sendall(data)
        except OSError:
            pass
        finally:
            if not link["cut"]:
                _hang_up(server)

    def _down(self, server: socket.socket, client: socket.socket, link: dict[str, bool]) -> None:
        try:
            while data := server.recv(65536):
                if link["cut"]:  # the server answered the COMMIT: drop it, cut the line
                    self.cuts += 1
                    break
                client.sendall(data)
        except OSError:
            pass
        finally:
            _hang_up(client, server)

    def close(self) -> None:
        self.listener.close()

    def arm(self, marker: bytes) -> None:
        self.marker = marker
        self.armed.set()


def _hang_up(*sockets: socket.socket) -> None:
    """Shut down (waking any thread blocked on it, sending FIN) and close."""
    for s in sockets:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()


def proxied(url: str, port: int) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{port}").geturl()


def setup(url: str) -> None:
    Ledger.open(url).close()
    reset_postgres(url)
    with Ledger.open(url) as books:
        books.open_account("bank", "USD", normal="debit")
        books.open_account("alice", "USD", min_balance="0")


def entry_events(books: Ledger, key: str) -> int:
    found = books.store.load_streams([entry_id_for_key(key)])
    return len(found)


def test_lost_ack_after_commit_is_retried_to_the_original_result() -> None:
    url = require_postgres()
    setup(url)
    parts = urlsplit(url)
    cutter = CommitCutter(parts.hostname or "127.0.0.1", parts.port or 5432)
    try:
        with Ledger.open(proxied(url, cutter.port), create_schema=False) as books:
            books.balance("alice")  # connected through the proxy
            cutter.arm(b"pay-1")
            out = books.transfer("pay-1", debit="bank", credit="alice", amount="10", asset="USD")
            assert cutter.cuts == 1  # the acknowledgement of the commit was lost
            # the ledger retried on a new connection and found its own commit
            assert out.ok and out.replayed
            assert out.entry_id == entry_id_for_key("pay-1")
            again = books.transfer(
                "pay-1", debit="bank", credit="alice", amount="10", asset="USD"
            )  # the caller's retry too
            assert again.replayed and again.entry_id == out.entry_id
            assert books.balance("alice").posted == Decimal("10.00")
            assert entry_events(books, "pay-1") == 1
    finally:
        cutter.close()


def test_lost_ack_of_a_batch_applies_each_command_once() -> None:
    url = require_postgres()
    setup(url)
    parts = urlsplit(url)
    cutter = CommitCutter(parts.hostname or "127.0.0.1", parts.port or 5432)
    try:
        with Ledger.open(proxied(url, cutter.port), create_schema=False) as books:
            books.balance("alice")
            cutter.arm(b"b-over")
            outcomes = books.submit_many(
                [books_transfer(f"b-{i}", "bank", "alice", "1") for i in range(50)]
                + [books_transfer("b-over", "alice", "bank", "1000")]
            )
            assert cutter.cuts == 1
            assert [o.status for o in outcomes] == ["applied"] * 50 + ["rejected"]
            assert all(o.replayed for o in outcomes)
            assert books.balance("alice").posted == Decimal("50.00")
    finally:
        cutter.close()


def books_transfer(key: str, debit: str, credit: str, amount: str) -> object:
    from ledger.commands import LegInput, PostEntry

    return PostEntry(
        key=key,
        legs=(
            LegInput(account=debit, amount=Decimal(amount), asset="USD"),
            LegInput(account=credit, amount=-Decimal(amount), asset="USD"),
        ),
    )

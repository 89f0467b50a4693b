"""A store closed under a reader answers with the ledger's own error, on every store:
the reads a projection runner, an audit or a Kafka relay make (``read_log``,
``max_position``, ``read_stream_version``, ``load_streams``) raise ``StoreError`` at
once, never the driver's or eventsourcing's exception. Before, SQLite let
``ConnectionPoolClosedError`` through."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from ledger import Ledger
from ledger.errors import StoreError


def reads(books: Ledger) -> list[Callable[[], Any]]:
    store: Any = books.store
    stream = uuid.uuid4()
    return [
        lambda: store.read_log(0, 10),
        store.max_position,
        lambda: store.read_stream_version(stream, 1),
        lambda: store.load_streams([stream]),
    ]


def test_reads_of_a_closed_store_raise_store_error(store_url: str) -> None:
    books = Ledger.open(store_url)
    books.open_account("cash", "USD", normal="debit")
    calls = reads(books)
    books.close()
    for call in calls:
        with pytest.raises(StoreError):
            call()


def test_a_store_closed_while_threads_read_raises_only_store_error(store_url: str) -> None:
    books = Ledger.open(store_url)
    books.open_account("cash", "USD", normal="debit")
    calls = reads(books)
    unexpected: list[BaseException] = []
    stop = threading.Event()
    started = threading.Barrier(4)

    def reader(call: Callable[[], Any]) -> None:
        started.wait()
        while not stop.is_set():
            try:
                call()
            except StoreError:
                return
            except BaseException as e:  # what the test is about
                unexpected.append(e)
                return

    threads = [threading.Thread(target=reader, args=(call,)) for call in calls[:3]]
    for t in threads:
        t.start()
    started.wait()
    books.close()
    for t in threads:
        t.join(timeout=30)
    stop.set()
    assert not unexpected, [type(e).__name__ for e in unexpected]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_store_closed_in_a_forked_child_stays_closed_there(store_url: str) -> None:
    """Closing in a child leaves the parent's pool alone (its connections are the
    parent's), and the child's reads then fail rather than open a pool of their own
    that nothing would close."""
    books = Ledger.open(store_url)
    books.open_account("cash", "USD", normal="debit")
    store = books.store
    pid = os.fork()
    if pid == 0:  # the child: exit code 0 only if its closed store refuses reads
        code = 1
        try:
            store.close()
            try:
                store.max_position()
                code = 2
            except StoreError:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.max_position() > 0  # the parent's store is still open
    books.close()

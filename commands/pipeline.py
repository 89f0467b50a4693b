"""The bulk path's pipeline: many chunks of commands, each decided while the previous
one is written (see :meth:`~ledger.commands.executor.Executor.run_chunked`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from ledger.errors import StoreUnavailable
from ledger.outcome import Outcome
from ledger.store import AppendConflict, KeyRecord

from .fingerprints import Print, flatten, key_ids_of, prints_of
from .models import Command

if TYPE_CHECKING:
    from .decision import Decision
    from .executor import Executor

__all__ = ["run_pipelined"]


def run_pipelined(executor: Executor, chunks: list[Sequence[Command]]) -> list[Outcome]:
    try:
        return _pipeline(executor, chunks)
    except BaseException:
        # A chunk's states are cached once it is decided, before its append
        # commits: whatever stopped the pipeline, they may be ahead of the store.
        executor.reset()
        raise


def _pipeline(executor: Executor, chunks: list[Sequence[Command]]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    with (
        ThreadPoolExecutor(1, thread_name_prefix="ledger-append") as writer,
        ThreadPoolExecutor(1, thread_name_prefix="ledger-keys") as reader,
    ):
        inflight: tuple[Future[Sequence[int]], int, Decision] | None = None
        # The next chunk's idempotency records are looked up while this one is
        # decided. Looking them up early is as safe as just before deciding: the
        # append checks again, under the lock, that no key has been recorded since.
        lookup = _lookup_ahead(executor, reader, chunks, 0)
        index = 0
        while index < len(chunks) or inflight is not None:
            decision = None
            if lookup is not None:
                prints, flat, records = lookup
                lookup = _lookup_ahead(executor, reader, chunks, index + 1)
                decision = executor._decide_all(prints, flat, executor.store, records.result())
            if inflight is not None:
                future, done_index, done = inflight
                inflight = None
                try:
                    future.result()
                except (AppendConflict, StoreUnavailable):
                    # The speculative states of this chunk and the next are invalid.
                    executor.reset()
                    outcomes.extend(executor.run(chunks[done_index]))
                    index = done_index + 1
                    lookup = _lookup_ahead(executor, reader, chunks, index)
                    continue
                done.log()
                outcomes.extend(done.outcomes)
            if decision is not None:
                executor.cache.absorb(decision.ws)
                inflight = (writer.submit(executor.store.append, decision.batch), index, decision)
                index += 1
    return outcomes


def _lookup_ahead(
    executor: Executor, reader: ThreadPoolExecutor, chunks: list[Sequence[Command]], index: int
) -> tuple[list[Print], list[Command], Future[dict[uuid.UUID, KeyRecord]]] | None:
    """Start looking up the key records of chunk ``index`` (None past the end)."""
    if index >= len(chunks):
        return None
    chunk = chunks[index]
    prints = prints_of(chunk)
    flat = flatten(chunk)
    return prints, flat, reader.submit(executor.store.lookup_keys, key_ids_of(prints, flat))

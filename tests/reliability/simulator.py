"""A seeded fault simulator (reliability case 20).

One run = one seed. A seeded random workload (funding, transfers that may overdraw,
holds, captures, voids, reversals, atomic batches, retries of earlier requests) goes
through the real write path (``Ledger`` on an SQLite store in memory or on a file, or
on PostgreSQL) and the real projection runner, while faults chosen by the same seed
strike the store's appends:

* **conflict**: a rival writer (another ``Ledger`` on the same store) commits a write
  to an account the append is about to change, so the append fails on its version;
* **drop_ack**: the append commits, then the caller is told the store was unreachable;
* **crash_before** / **crash_after**: the process "dies" just before or just after the
  commit; it restarts (a fresh ``Ledger``, empty caches) and retries the same command
  with the same key;
* **projector**: the projector dies between its view writes and its checkpoint, batch
  sizes vary, and a stale runner tries to apply batches another runner already applied;
* **delivery**: a Kafka-path projector is fed the log in random ranges with older
  ranges delivered again, late and out of order; its view must equal the log-fed one.

Every run checks that a plain serial model, the store's balances, the read model and
every key's outcome agree, that no key applied twice, and (on some seeds) that the
audit is clean. A failure names its seed; ``python -m tests.reliability.simulator
--seed N`` replays it exactly. ``--seeds 100000`` is a soak.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from ledger import Ledger, Outcome
from ledger.adapters.kafka_consumer import KafkaProjector
from ledger.adapters.sqlite_store import SQLiteEventStore
from ledger.adapters.view_store import SQLiteViewStore
from ledger.commands import AtomicBatch, LegInput, PlaceHold, PostEntry, PostHold, ReverseEntry
from ledger.commands.models import VoidHold
from ledger.errors import StoreUnavailable
from ledger.events import TOPIC_ACCOUNT_CHANGED, LogEvent, decode
from ledger.model import entry_id_for_key
from ledger.projections import BalancesView, ProjectionRunner
from ledger.projections.audit import audit
from ledger.projections.runner import ProjectionConflict
from ledger.retry import Backoff
from ledger.store import EventStore, WriteBatch
from tests.property.test_ledger_machine import MAccount, Model

WALLETS = [f"w{i}" for i in range(4)]


class Crash(BaseException):
    """The simulated process dies here (not an Exception: nothing may catch it)."""


@dataclass(frozen=True)
class Faults:
    conflict: float = 0.12
    drop_ack: float = 0.12
    crash_before: float = 0.06
    crash_after: float = 0.06
    projector_crash: float = 0.3


@dataclass
class Report:
    seed: int
    commands: int = 0
    faults: dict[str, int] = field(default_factory=dict)

    def hit(self, name: str) -> None:
        self.faults[name] = self.faults.get(name, 0) + 1


class FaultyStore:
    """Delegates to a real store; its appends suffer the seed's faults."""

    def __init__(self, inner: EventStore, sim: Simulation) -> None:
        self._inner = inner
        self._sim = sim

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def append(self, batch: WriteBatch) -> Any:
        return self._sim.faulty_append(self._inner.append, batch, rival_ok=True)

    def exclusive(self) -> Any:
        sim = self._sim
        inner = self._inner.exclusive()

        class Session:
            def __enter__(self) -> Any:
                self._s = inner.__enter__()
                return self

            def __exit__(self, *exc: Any) -> Any:
                return inner.__exit__(*exc)

            def read(self, *a: Any) -> Any:
                return self._s.read(*a)

            def load_streams(self, *a: Any) -> Any:
                return self._s.load_streams(*a)

            def append(self, batch: WriteBatch) -> Any:
                # no rival while the write lock is held: it would wait for us forever
                return sim.faulty_append(self._s.append, batch, rival_ok=False)

        return Session()


class _Forgetful(dict[Any, Any]):
    """A cache of outcomes that keeps nothing."""

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def update(self, *args: Any, **kwargs: Any) -> None:
        pass


def _plant_skip_replay(books: Ledger) -> None:
    """The planted bug, injected from the test side: the executor decides every command
    as new, ignoring recorded outcomes (looked up or cached)."""
    executor = books._executor
    decide_all = executor._decide_all

    def forgetful(prints: Any, flat: Any, store: Any, records: Any = None, **kw: Any) -> Any:
        return decide_all(prints, flat, store, {}, **kw)

    executor._decide_all = forgetful  # type: ignore[method-assign]
    executor.cache.keys = _Forgetful()


class Simulation:
    """One seeded run against one store."""

    def __init__(
        self, seed: int, url: str, open_store: Any, *, faults: Faults, planted_bug: bool
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.url = url
        self.open_store = open_store
        self.faults = faults
        self.planted_bug = planted_bug
        self.report = Report(seed)
        self.model = Model()
        self.expected: dict[str, tuple[Any, tuple[str, str | None]]] = {}
        self.holds: dict[str, tuple[list[tuple[str, int]], str]] = {}
        self.postings: dict[str, list[tuple[str, int, int]]] = {}
        self.rival_count = 0
        self.armed = False
        self.rival = Ledger(open_store())
        self.kafka_views: Any = None
        self.books = self._start()

    def _start(self) -> Ledger:
        books = Ledger(FaultyStore(self.open_store(), self))  # type: ignore[arg-type]
        books._executor.unavailable_backoff = Backoff(0.0, 0.0)
        if self.planted_bug:
            _plant_skip_replay(books)
        return books

    def restart(self) -> None:
        self.report.hit("restart")
        self.books.close()
        self.books = self._start()

    # -- faults ------------------------------------------------------------------------------

    def faulty_append(self, append: Any, batch: WriteBatch, *, rival_ok: bool) -> Any:
        if not self.armed:
            return append(batch)
        f, r = self.faults, self.rng.random()
        if r < f.conflict:
            if rival_ok and self._rival_write(batch):
                self.report.hit("conflict")
            return append(batch)
        r -= f.conflict
        if r < f.crash_before:
            self.report.hit("crash_before")
            raise Crash("before commit")
        r -= f.crash_before
        positions = append(batch)
        if r < f.drop_ack:
            self.report.hit("drop_ack")
            raise StoreUnavailable("simulated: acknowledgement lost after commit")
        r -= f.drop_ack
        if r < f.crash_after:
            self.report.hit("crash_after")
            raise Crash("after commit")
        return positions

    def _rival_write(self, batch: WriteBatch) -> bool:
        touched = [
            decode(e.state)["account"] for e in batch.events if e.topic == TOPIC_ACCOUNT_CHANGED
        ]
        targets = [a for a in touched if a in WALLETS]
        if not targets:
            return False
        account = self.rng.choice(targets)
        self.rival_count += 1
        key = f"rival-{self.rival_count}"
        self.armed = False
        try:
            out = self.rival.transfer(key, debit="bank", credit=account, amount="0.01", asset="USD")
        finally:
            self.armed = True
        assert out.ok
        assert self.model.apply([("bank", 1), (account, -1)], pending=False) is None
        return True

    # -- the workload ------------------------------------------------------------------------

    def setup(self) -> None:
        self.rival.open_account("bank", "USD", normal="debit")
        self.model.accounts["bank"] = MAccount("USD", 1, None, None)
        for name in WALLETS:
            self.rival.open_account(name, "USD", min_balance="0")
            self.model.accounts[name] = MAccount("USD", -1, 0, None)

    @staticmethod
    def _legs(legs: list[tuple[str, int]]) -> tuple[LegInput, ...]:
        return tuple(
            LegInput(account=a, amount=Decimal(m).scaleb(-2), asset="USD") for a, m in legs
        )

    def step(self, i: int) -> None:
        rng = self.rng
        kind = rng.choice(
            [
                "fund",
                "transfer",
                "transfer",
                "hold",
                "capture",
                "void",
                "reverse",
                "atomic",
                "retry",
            ]
        )
        key = f"c{i}"
        if kind == "fund":
            w = rng.choice(WALLETS)
            legs = [("bank", rng.randrange(100, 3000)), (w, 0)]
            legs[1] = (w, -legs[0][1])
            self.run(key, PostEntry(key=key, legs=self._legs(legs)), self._post(key, legs))
        elif kind == "transfer":
            a, b = rng.sample(WALLETS, 2)
            m = rng.randrange(1, 2500)
            legs = [(a, m), (b, -m)]
            self.run(key, PostEntry(key=key, legs=self._legs(legs)), self._post(key, legs))
        elif kind == "hold":
            a, b = rng.sample(WALLETS, 2)
            m = rng.randrange(1, 2000)
            legs = [(a, m), (b, -m)]
            code = self.model.apply(legs, pending=True)
            if code is None:
                self.holds[key] = (legs, "pending")
            self.run(key, PlaceHold(key=key, legs=self._legs(legs)), _expect(code))
        elif kind in ("capture", "void") and self.holds:
            hold = rng.choice(sorted(self.holds))
            legs, status = self.holds[hold]
            if status != "pending":
                expected = _expect("hold_not_pending")
            else:
                self.model.apply(legs, pending=True, sign=-1)
                if kind == "capture":
                    assert self.model.apply(legs, pending=False) is None
                    self.postings[key] = [(a, m, abs(m)) for a, m in legs]
                self.holds[hold] = (legs, "posted" if kind == "capture" else "voided")
                expected = _expect(None)
            hold_id = entry_id_for_key(hold)
            cmd = (
                PostHold(key=key, hold_id=hold_id)
                if kind == "capture"
                else VoidHold(key=key, hold_id=hold_id)
            )
            self.run(key, cmd, expected)
        elif kind == "reverse" and self.postings:
            posting = rng.choice(sorted(self.postings))
            rest = self.postings[posting]
            back = [(a, -m // abs(m) * r) for a, m, r in rest if r]
            if not back:
                expected = _expect("entry_not_reversible")
            else:
                code = self.model.apply(back, pending=False)
                if code is None:
                    self.postings[posting] = [(a, m, 0) for a, m, _ in rest]
                expected = _expect(code)
            self.run(key, ReverseEntry(key=key, entry_id=entry_id_for_key(posting)), expected)
        elif kind == "atomic":
            a, b, c = rng.sample(WALLETS, 3)
            x, y = rng.randrange(1, 1500), rng.randrange(1, 1500)
            first, second = [(a, x), (b, -x)], [(b, y), (c, -y)]
            snapshot = {n: MAccount(**vars(s)) for n, s in self.model.accounts.items()}
            code = self.model.apply(first, pending=False) or self.model.apply(second, pending=False)
            if code is not None:
                self.model.accounts = snapshot
            else:
                self.postings[f"{key}/1"] = [(n, m, abs(m)) for n, m in first]
                self.postings[f"{key}/2"] = [(n, m, abs(m)) for n, m in second]
            cmd = AtomicBatch(
                key=key,
                commands=(
                    PostEntry(key=f"{key}/1", legs=self._legs(first)),
                    PostEntry(key=f"{key}/2", legs=self._legs(second)),
                ),
            )
            self.run(key, cmd, _expect(code))
        elif self.expected:  # retry an earlier request, unchanged
            earlier = rng.choice(sorted(self.expected))
            cmd, expected = self.expected[earlier]
            self.run(earlier, cmd, expected, replay=True)

    def _post(self, key: str, legs: list[tuple[str, int]]) -> tuple[str, str | None]:
        code = self.model.apply(legs, pending=False)
        if code is None:
            self.postings[key] = [(a, m, abs(m)) for a, m in legs]
        return _expect(code)

    def run(
        self, key: str, cmd: Any, expected: tuple[str, str | None], *, replay: bool = False
    ) -> None:
        """Submit until an outcome arrives, restarting after each crash."""
        self.report.commands += 1
        for _ in range(50):
            try:
                self.armed = True
                outcome: Outcome = self.books.submit(cmd)
                break
            except Crash:
                self.armed = False
                self.restart()
            finally:
                self.armed = False
        else:
            raise AssertionError(f"{key}: no outcome after 50 crashes")
        got = (outcome.status, outcome.code if outcome.status != "applied" else None)
        assert got == expected, f"{key}: got {got}, model says {expected} ({outcome.message})"
        if replay:
            assert outcome.replayed, f"{key}: a retry was applied again"
        else:
            self.expected[key] = (cmd, expected)

    # -- projections and checks ------------------------------------------------------------

    def project(self, views: Any) -> None:
        """Catch up with crashes mid-batch, varying batch sizes, and a stale runner."""
        stale = ProjectionRunner(self.books.store, views, [BalancesView()], batch_size=3)
        stale_positions = {"balances": stale.checkpoint("balances")}
        for _ in range(20):
            size = self.rng.randrange(1, 8)

            def maybe_die(_: int) -> None:
                if self.rng.random() < self.faults.projector_crash:
                    self.report.hit("projector_crash")
                    raise Crash("projector between view write and checkpoint")

            runner = ProjectionRunner(
                self.books.store, views, [BalancesView()], batch_size=size, on_flushed=maybe_die
            )
            try:
                runner.catch_up()
                break
            except Crash:
                continue
        # a runner that read an old checkpoint must not apply those events again
        old = stale_positions["balances"]
        batch = self.books.store.read_log(old, 5)
        if batch and stale.checkpoint("balances") > old:
            events = [LogEvent.from_notification(n) for n in batch]
            try:
                stale._apply(events, dict(stale_positions))
            except ProjectionConflict:
                self.report.hit("stale_runner")
            else:
                raise AssertionError("a stale runner applied events a second time")

    def deliver(self, projector: Any) -> None:
        """Feed the Kafka-path projector the log as a broker may deliver it: fresh
        events in order, with earlier ranges delivered again, late and out of order."""
        log: list[LogEvent] = []
        while batch := self.books.store.read_log(log[-1].position if log else 0, 500):
            log += [LogEvent.from_notification(n) for n in batch]
        done = 0
        while done < len(log):
            upto = min(len(log), done + self.rng.randrange(1, 9))
            delivery = log[done:upto]
            if done and self.rng.random() < 0.4:  # a redelivered older range
                start = self.rng.randrange(0, done)
                delivery = log[start : min(done, start + self.rng.randrange(1, 9))] + delivery
                self.report.hit("redelivery")
            projector.apply_batch({0: delivery})
            done = upto

    def check(self, views: Any, *, with_audit: bool) -> None:
        for name, acct in self.model.accounts.items():
            b = self.books.balance(name)
            got = (
                int(b.posted.scaleb(2)),
                int(b.pending_out.scaleb(2)),
                int(b.pending_in.scaleb(2)),
            )
            assert got == (acct.posted, acct.out, acct.inn), f"store {name}: {got} vs {acct}"
        with views.snapshot() as w:
            rows = {
                r[0]: (int(r[1]), int(r[2]), int(r[3]))
                for r in w.query("SELECT account, posted, pending_out, pending_in FROM rm_balances")
            }
        for name, acct in self.model.accounts.items():
            assert rows.get(name) == (acct.posted, acct.out, acct.inn), (
                f"view {name}: {rows.get(name)}"
            )
        for key, (cmd, expected) in self.expected.items():
            out = self.books.submit(cmd)
            got = (out.status, out.code if out.status != "applied" else None)
            assert got == expected and out.replayed, f"{key}: replays as {got}"
        if with_audit:
            report = audit(self.books.store)
            assert report.clean, report.findings


def _expect(code: str | None) -> tuple[str, str | None]:
    return ("applied", None) if code is None else ("rejected", code)


def run_seed(
    seed: int,
    *,
    store: str = "memory",
    pg_url: str | None = None,
    steps: int = 25,
    faults: Faults | None = None,
    planted_bug: bool = False,
    tmp: Path | None = None,
) -> Report:
    """Run one seed; raise AssertionError (naming the seed) on any disagreement."""
    faults = faults or Faults()
    keeper = None
    if store == "memory":
        path = f"file:sim-{seed}-{time.monotonic_ns()}?mode=memory&cache=shared"
        url = "sqlite:///:memory:"
        keeper = SQLiteEventStore(url, path)  # keeps the shared in-memory database alive
        keeper.create_schema()

        def open_store() -> Any:
            return SQLiteEventStore(url, path)

        views: Any = SQLiteViewStore(url, path)
    elif store == "sqlite":
        base = tmp or Path(tempfile.mkdtemp(prefix="ledger-sim-"))
        path = str(base / f"sim-{seed}.db")
        url = f"sqlite:///{path}"
        Ledger.open(url).close()

        def open_store() -> Any:
            return SQLiteEventStore(url, path)

        views = SQLiteViewStore(url, path)
    else:
        from ledger.adapters.postgres_store import PostgresEventStore
        from ledger.adapters.view_store import PostgresViewStore

        assert pg_url is not None
        url = pg_url
        Ledger.open(url).close()

        def open_store() -> Any:
            return PostgresEventStore(url)

        views = PostgresViewStore(url, open_store().settings)
    sim = Simulation(seed, url, open_store, faults=faults, planted_bug=planted_bug)
    try:
        sim.setup()
        for i in range(steps):
            sim.step(i)
            if i % 8 == 7:
                sim.project(views)
        sim.project(views)
        sim.kafka_views = SQLiteViewStore(
            "memory", f"file:kv-{seed}-{time.monotonic_ns()}?mode=memory&cache=shared"
        )
        projector = KafkaProjector(
            sim.kafka_views,
            [BalancesView()],
            bootstrap="",
            topic="ledger",
            group="sim",
            consumer=object(),
        )
        sim.deliver(projector)
        sim.check(views, with_audit=seed % 10 == 0)
    except AssertionError as e:
        raise AssertionError(f"seed {seed} ({store}): {e}") from e
    except Exception as e:  # an unexpected error is a failure of the seed too
        raise AssertionError(f"seed {seed} ({store}): {type(e).__name__}: {e}") from e
    finally:
        if sim.kafka_views is not None:
            sim.kafka_views.close()
        sim.books.close()
        sim.rival.close()
        views.close()
        if keeper is not None:
            keeper.close()
    return sim.report


def main() -> None:
    parser = argparse.ArgumentParser(description="the seeded fault simulator")
    parser.add_argument("--seed", type=int, help="replay one seed")
    parser.add_argument("--seeds", type=int, default=2000, help="run seeds 0..N-1")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--store", choices=["memory", "sqlite"], default="memory")
    args = parser.parse_args()
    seeds = [args.seed] if args.seed is not None else range(args.start, args.start + args.seeds)
    totals: dict[str, int] = {}
    started = time.perf_counter()
    for seed in seeds:
        try:
            report = run_seed(seed, store=args.store)
        except AssertionError as e:
            print(f"FAILED {e}", file=sys.stderr)
            print(f"replay: python -m tests.reliability.simulator --seed {seed}", file=sys.stderr)
            raise SystemExit(1) from None
        for name, count in report.faults.items():
            totals[name] = totals.get(name, 0) + count
    print(f"{len(seeds)} seeds passed in {time.perf_counter() - started:.1f}s; faults: {totals}")


if __name__ == "__main__":
    main()

"""Run commands: load, decide, append, with bounded whole-attempt retries.

One :meth:`Executor.run` call is one storage transaction, whatever the number of
commands. Each command gets its own :class:`~ledger.outcome.Outcome`; an
:class:`~commands.models.AtomicBatch` is one command whose inner commands apply
all-or-nothing. A conflict with a concurrent writer (a stream moved on, a key appeared)
makes the whole attempt start again from fresh state, up to ``attempts_max`` times.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime

from eventsourcing.persistence import StoredEvent

from ledger import events
from ledger.accounts import balance_of
from ledger.assets import Asset, iso_currency, to_decimal
from ledger.errors import (
    CommandRejected,
    ConcurrencyConflict,
    IdempotencyConflict,
    InvalidCommand,
    LedgerError,
    LimitExceeded,
    PaymentVetoed,
    RiskPolicyFailed,
    StoreUnavailable,
)
from ledger.logs import get_logger
from ledger.model import (
    account_stream_id,
    asset_stream_id,
    entry_id_for_key,
)
from ledger.outcome import Outcome
from ledger.retry import Backoff
from ledger.risk import RiskCheck, RiskPolicy
from ledger.store import (
    AppendConflict,
    EventStore,
    KeyRecord,
    Known,
    StateReader,
    StoreSession,
)

from .caches import StateCache
from .decision import Decision, replay
from .fingerprints import Print, fingerprint, flatten, key_ids_of, prints_of
from .handlers import HANDLERS, referenced_accounts, referenced_assets, referenced_entries
from .models import (
    ACCOUNT_COMMANDS,
    AtomicBatch,
    Command,
    DeclareAsset,
    OpenAccount,
    PayRequest,
    PlaceHold,
    PostEntry,
    gc_paused,
)
from .pipeline import run_pipelined
from .working_set import Tx, WorkingSet

__all__ = [
    "Decision",
    "Executor",
    "Print",
    "StateCache",
    "fingerprint",
    "flatten",
    "key_ids_of",
    "prints_of",
]

log = get_logger(__name__)

#: Whole-attempt retries after a conflict with a concurrent writer.
ATTEMPTS_MAX = 30
#: Attempts made optimistically before an attempt holds the store's write lock
#: throughout (so that a writer cannot be starved by others on hot accounts).
OPTIMISTIC_ATTEMPTS = 3
#: Batches of at least this many commands are decided with the cyclic GC paused.
GC_PAUSE_MIN = 100
#: Cap of the randomised back-off between attempts, in seconds.
BACKOFF_MAX_S = 0.1
#: Commands in one call of :meth:`Executor.run`.
BATCH_MAX = 10_000
#: Commands that record no journal entry (their key is kept as a key record). Command
#: models are final: the executor dispatches on exact types (see ``HANDLERS``).
_NO_ENTRY: frozenset[type[Command]] = frozenset(
    {OpenAccount, DeclareAsset, AtomicBatch, *ACCOUNT_COMMANDS}
)


class Executor:
    """Decides and appends batches of commands against one store."""

    def __init__(
        self,
        store: EventStore,
        *,
        clock: Callable[[], datetime] | None = None,
        attempts_max: int = ATTEMPTS_MAX,
        risk: RiskPolicy | None = None,
        pause_gc: bool = False,
    ) -> None:
        self.store = store
        #: Pause the cyclic garbage collector during large batches (see
        #: :func:`~ledger.commands.models.gc_paused`).
        self.pause_gc = pause_gc
        self.risk = risk
        #: Pauses before retrying after the store was unavailable (doubling, capped at
        #: one second; the fault simulator makes them zero), and after a conflict
        #: with a concurrent writer (jittered: writers that collided stop colliding).
        self.unavailable_backoff = Backoff(0.05, 1.0)
        self.contention_backoff = Backoff(0.0005, BACKOFF_MAX_S, jitter=True)
        self.cache = StateCache()
        self.clock = clock or (lambda: datetime.now(UTC))
        self.attempts_max = attempts_max

    def run(self, commands: Sequence[Command]) -> list[Outcome]:
        """Apply ``commands`` in one transaction; one outcome per command, in order."""
        if len(commands) > BATCH_MAX:
            raise LimitExceeded(f"{len(commands)} commands in one batch; the limit is {BATCH_MAX}")
        with gc_paused(self.pause_gc and len(commands) >= GC_PAUSE_MIN):
            return self._run(commands)

    def decide(
        self,
        prints: Sequence[Print],
        flat: Sequence[Command],
        *,
        trust_cache: bool = False,
        refresh: bool = False,
        store: StateReader | None = None,
    ) -> Decision:
        """Read what the commands need and decide them; append nothing (the caller
        appends the decision's batch, then calls :meth:`accept`). See
        :mod:`ledger.commands.group_commit`.

        ``trust_cache``: when every state the commands need is cached, read nothing,
        not even the keys: a key is taken as new unless this process committed it.
        The append's guard and primary keys catch a key or state that another process
        wrote (the append fails; run the commands again with :meth:`run`).
        ``refresh``: first read every state the commands use again, keys aside (see
        :meth:`refresh`; the cache may be stale because other processes write).
        ``store``: where to read (default: the executor's store; the committer thread
        reads on its own connection). Nothing the executor keeps changes before a
        read returns, so a store that raises instead of reading leaves the executor
        as it was (the event loop's committer uses one to decide on the loop only
        what needs no reads)."""
        source = self.store if store is None else store
        if refresh:
            self.refresh(flat, source)
        decision = self._decide_all(prints, flat, source, trust_cache=trust_cache)
        if trust_cache and self._unseen_keys_of_invalid(prints, decision, source):
            # An invalid outcome writes no key, so the append cannot catch a key that
            # another process (or an earlier Ledger on this store) already applied:
            # a retry must replay that outcome, not judge the request again now.
            decision = self._decide_all(prints, flat, source)
        return decision

    def _unseen_keys_of_invalid(
        self, prints: Sequence[Print], decision: Decision, store: StateReader
    ) -> bool:
        """Whether the store holds the key of a command decided invalid without its
        key being read."""
        key_ids: set[uuid.UUID] = set()
        for (cmd, key_id, _), outcome in zip(prints, decision.outcomes, strict=True):
            if outcome.status == "invalid" and not outcome.replayed:
                key_ids.add(key_id)
                if type(cmd) is AtomicBatch:
                    key_ids.update(entry_id_for_key(inner.key) for inner in cmd.commands)
        if not key_ids:
            return False
        records, _ = store.read(key_ids, [])
        return bool(records)

    def refresh(self, flat: Sequence[Command], store: StateReader | None = None) -> None:
        """Read again the states the commands use (an account held since it was read
        from the store only if its latest version is another), keys aside: a decision
        that trusts the cache then reads nothing (see :meth:`decide`). A read that
        fails leaves the cache possibly stale, as it may always be (every append names
        the versions it extends)."""
        self._forget(flat, recheck=True)
        self._read(set(), flat, self.store if store is None else store, recheck=True)

    def accept(self, decision: Decision) -> None:
        """Keep the states and outcomes of a decision whose append committed."""
        self.cache.absorb(decision.ws)
        self.cache.remember(decision.decided)

    def forget(self, flat: Sequence[Command]) -> None:
        """Forget the cached states the commands use (they are read again)."""
        self._forget(flat)

    def reset(self) -> None:
        """Forget every cached state (they are read again from the store)."""
        self.cache = StateCache()

    def _run(self, commands: Sequence[Command]) -> list[Outcome]:
        prints = prints_of(commands)
        flat = flatten(commands)
        failure: LedgerError | None = None
        for attempt in range(self.attempts_max):
            try:
                if attempt < OPTIMISTIC_ATTEMPTS:
                    return self._attempt(prints, flat, self.store)
                with self.store.exclusive() as session:
                    return self._attempt(prints, flat, session)
            except AppendConflict:
                failure = ConcurrencyConflict(
                    f"gave up after {self.attempts_max} attempts under contention; retry later"
                )
                time.sleep(self.contention_backoff.delay(attempt))
            except StoreUnavailable as e:
                failure = e
                time.sleep(self.unavailable_backoff.delay(attempt))
            self._forget(flat)
            log.debug("ledger.retry", attempt=attempt + 1, reason=type(failure).__name__)
        assert failure is not None
        raise failure

    def _forget(self, flat: Sequence[Command], *, recheck: bool = False) -> None:
        """Forget the states the commands use; with ``recheck``, keep the accounts they
        name whose first event is cached (the read checks them, see :meth:`_read`)."""
        accounts = [a for cmd in flat for a in referenced_accounts(cmd)]
        if recheck:
            openings = self.cache.openings
            accounts = [a for a in accounts if a not in openings]
        entries = [e for cmd in flat for e in referenced_entries(cmd)]
        for entry_id in entries:
            held = self.cache.entries.get(entry_id)
            if held is not None:
                accounts.extend(leg.account for leg in held.legs)
        self.cache.forget(accounts, entries)

    def _attempt(
        self,
        prints: Sequence[Print],
        flat: Sequence[Command],
        store: EventStore | StoreSession,
    ) -> list[Outcome]:
        decision = self._decide_all(prints, flat, store)
        if decision.batch.events or decision.batch.keys:
            store.append(decision.batch)
        self.accept(decision)
        decision.log()
        return decision.outcomes

    def _decide_all(
        self,
        prints: Sequence[Print],
        flat: Sequence[Command],
        store: StateReader,
        records: dict[uuid.UUID, KeyRecord] | None = None,
        *,
        trust_cache: bool = False,
    ) -> Decision:
        """Read what the commands need and decide them all; append nothing yet.

        ``records``: the commands' key records when they were already looked up (the
        pipeline looks up the next chunk's keys while it decides this one). For
        ``trust_cache`` see :meth:`decide`."""
        if records is None:
            records = self._read(key_ids_of(prints, flat), flat, store, trust_cache=trust_cache)
        else:
            self._read(set(), flat, store)
        ws = WorkingSet(self.cache.accounts, self.cache.entries, self.cache.assets, self.clock())
        decided: dict[uuid.UUID, tuple[str, Outcome]] = {}
        #: Keys of the inner commands of the atomic batches applied here: written in
        #: the same append, so neither the store's keys nor its guard can see them.
        inner: set[uuid.UUID] = set()
        known = self.cache.keys
        outcomes: list[Outcome] = []
        touched: list[Sequence[tuple[str, uuid.UUID]]] = []
        for cmd, key_id, fp in prints:
            record = records.get(key_id)
            earlier = decided.get(key_id)
            if earlier is None and record is None:
                earlier = known.get(key_id)
            accounts: Sequence[tuple[str, uuid.UUID]] = ()
            if record is not None:
                outcome = replay(
                    cmd.key, fp, record.fingerprint, Outcome.from_record(cmd.key, record.outcome)
                )
            elif earlier is not None:
                outcome = replay(cmd.key, fp, earlier[0], earlier[1])
            elif key_id in inner:
                outcome = Outcome.from_error(cmd.key, _used_inside(cmd.key))
            else:
                taken = decided.keys() | inner if type(cmd) is AtomicBatch else inner
                outcome, accounts = self._decide(cmd, key_id, fp, ws, records, taken=taken)
                if outcome.status in ("applied", "rejected"):
                    decided[key_id] = (fp, outcome)
                if outcome.status == "applied" and type(cmd) is AtomicBatch:
                    inner.update(entry_id_for_key(c.key) for c in cmd.commands)
            outcomes.append(outcome)
            touched.append(accounts)
        return Decision(outcomes, touched, ws, ws.finish(), decided)

    def run_chunked(self, commands: Sequence[Command], chunk_size: int) -> list[Outcome]:
        """Apply many commands, ``chunk_size`` per transaction, deciding each chunk while
        the previous one is being written (the database and Python work in parallel).

        Each chunk is appended only after the previous one committed, and is decided
        on the states the previous one produced. If a chunk's append fails, the
        speculative decisions of the next are dropped and the failed chunk is re-run
        on its own (with the usual retries); every command stays all-or-nothing and
        retry-safe under its key.
        """
        chunks = [commands[i : i + chunk_size] for i in range(0, len(commands), chunk_size)]
        keys = [cmd.key for cmd in flatten(commands)]
        if len(chunks) < 2 or len(set(keys)) != len(keys):
            return [o for chunk in chunks for o in self.run(chunk)]
        with gc_paused(self.pause_gc):  # the whole pipeline: deciding, encoding, writing
            return run_pipelined(self, chunks)

    def _decide(
        self,
        cmd: Command,
        key_id: uuid.UUID,
        fp: str,
        ws: WorkingSet,
        records: dict[uuid.UUID, KeyRecord],
        *,
        taken: AbstractSet[uuid.UUID] = frozenset(),
    ) -> tuple[Outcome, Sequence[tuple[str, uuid.UUID]]]:
        """Decide one command; its outcome and the (account, entry) pairs it touched.
        ``taken``: keys this decision already used (an atomic batch's inner commands
        may not reuse them)."""
        tx = Tx(ws)
        tx.fingerprint = fp
        try:
            if type(cmd) is AtomicBatch:
                kind = self._atomic(cmd, tx, records, taken)
            else:
                if self.risk is not None:
                    self._vet(cmd, tx)
                kind = HANDLERS[type(cmd)](cmd, tx, key_id)
        except CommandRejected as e:
            tx.rollback()
            outcome = Outcome(cmd.key, "rejected", code=e.code, message=e.message)
            ws.keys.append(KeyRecord(key_id, cmd.key, fp, outcome.to_record()))
            # The rejection holds only if no concurrent writer applied the same key.
            ws.read_versions.setdefault(key_id, 0)
            return outcome, tx.touched
        except LedgerError as e:
            tx.rollback()
            return Outcome.from_error(cmd.key, e), ()
        ws.merge(tx)
        has_entry = type(cmd) not in _NO_ENTRY
        # Positional: the hot path of every batch (keywords cost three times more).
        outcome = Outcome(
            cmd.key, "applied", key_id if has_entry else None, None, None, False, kind
        )
        if has_entry:
            ws.entry_keys.append(key_id)
        else:
            ws.keys.append(KeyRecord(key_id, cmd.key, fp, outcome.to_record()))
            # As for a rejection: the key must not be an entry's already (another
            # writer's, not read: the key row's primary key would not see it).
            ws.read_versions.setdefault(key_id, 0)
        return outcome, tx.touched

    def _atomic(
        self,
        batch: AtomicBatch,
        tx: Tx,
        records: dict[uuid.UUID, KeyRecord],
        taken: AbstractSet[uuid.UUID],
    ) -> str:
        seen: set[str] = {batch.key}
        inner: list[KeyRecord] = []
        entry_keys: list[uuid.UUID] = []
        for index, cmd in enumerate(batch.commands):
            key_id = entry_id_for_key(cmd.key)
            if cmd.key in seen:
                raise InvalidCommand(f"key {cmd.key!r} appears twice in atomic batch {batch.key!r}")
            if key_id in records or key_id in taken:
                raise IdempotencyConflict(
                    f"key {cmd.key!r} inside atomic batch {batch.key!r} was already used"
                )
            seen.add(cmd.key)
            inner_fp = fingerprint(cmd)
            tx.fingerprint = inner_fp
            try:
                self._vet(cmd, tx)
                kind = HANDLERS[type(cmd)](cmd, tx, key_id)
            except LedgerError as e:
                e.message = f"command {index} ({cmd.key!r}) of atomic batch: {e.message}"
                e.args = (e.message,)
                raise
            if type(cmd) in _NO_ENTRY:
                done = Outcome(cmd.key, "applied", kind=kind)
                inner.append(KeyRecord(key_id, cmd.key, inner_fp, done.to_record()))
                tx.ws.read_versions.setdefault(key_id, 0)  # no entry under it (above)
            else:
                entry_keys.append(key_id)
        tx.ws.keys.extend(inner)
        tx.ws.entry_keys.extend(entry_keys)
        return "atomic_batch"

    def _vet(self, cmd: Command, tx: Tx) -> None:
        """Ask the risk policy about a command that moves money; raise its veto."""
        if self.risk is None or not isinstance(cmd, PostEntry | PlaceHold | PayRequest):
            return
        if isinstance(cmd, PayRequest):
            request = tx.entry(cmd.request_id)
            if request is None or request.kind != "request":
                return  # the handler reports it
            legs = tuple(
                (leg.account, to_decimal(leg.amount, tx.asset(leg.asset)), leg.asset)
                for leg in request.legs
            )
        else:
            legs = tuple((leg.account, leg.amount, leg.asset) for leg in cmd.legs)
        balances = {}
        for account, _, _ in legs:
            state = tx.ws.current_account(account)
            if state is not None:
                balances[account] = balance_of(state)
        try:
            reason = self.risk(RiskCheck(cmd, legs, balances))
        except Exception as e:
            # The policy is the application's code: its failure refuses this command
            # only (unrecorded), never the commands decided beside it.
            raise RiskPolicyFailed(f"the risk policy raised {type(e).__name__}: {e}") from e
        if reason is not None:
            raise PaymentVetoed(f"vetoed by the risk policy: {reason}")

    def _read(
        self,
        key_ids: set[uuid.UUID],
        flat: Sequence[Command],
        store: StateReader,
        *,
        trust_cache: bool = False,
        recheck: bool = False,
    ) -> dict[uuid.UUID, KeyRecord]:
        """Fetch the keys' records and every missing state in as few round trips as
        possible: one for keys, entries, assets and named accounts together, and a
        second only for accounts of referenced holds and postings not yet known.
        With ``trust_cache`` and every state cached, nothing is read (see
        :meth:`decide`). With ``recheck``, the named accounts still cached are read
        too, as known streams: only those that moved on come back, and are rebuilt
        from their cached first event and their latest."""
        cache = self.cache
        wanted_entries: set[uuid.UUID] = set()
        wanted_accounts: set[str] = set()
        codes: set[str] = set()
        for cmd in flat:
            if type(cmd) is PostEntry:  # most of the volume: its legs name everything
                for leg in cmd.legs:
                    wanted_accounts.add(leg.account)
                    codes.add(leg.asset)
                continue
            wanted_entries.update(referenced_entries(cmd))
            wanted_accounts.update(referenced_accounts(cmd))
            codes.update(referenced_assets(cmd))
        wanted_assets = {code for code in codes if iso_currency(code) is None}
        by_id, known = self._accounts_to_read(wanted_accounts, recheck)
        ids: list[uuid.UUID] = [e for e in wanted_entries if e not in cache.entries]
        ids += [asset_stream_id(c) for c in wanted_assets if c not in cache.assets]
        ids += [sid for sid in by_id if sid not in known]
        if trust_cache and not ids:
            key_ids = set()  # taken as new; the append's guard checks them
        if key_ids or ids or known:
            records, loaded = _read_from(store, key_ids, ids, known)
            self._absorb_loaded(loaded, by_id)
        else:
            records = {}
        second: dict[uuid.UUID, str] = {}
        for entry_id in wanted_entries:
            held = cache.entries.get(entry_id)
            if held is not None:
                for held_leg in held.legs:
                    if held_leg.account not in cache.accounts:
                        second[account_stream_id(held_leg.account)] = held_leg.account
        if second:
            self._absorb_loaded(store.load_streams(list(second)), second)
        return records

    def _accounts_to_read(
        self, wanted: set[str], recheck: bool
    ) -> tuple[dict[uuid.UUID, str], dict[uuid.UUID, Known]]:
        """The accounts to read, by stream id (those not cached; with ``recheck``, the
        cached ones too), and among them the known ones: cached with their first
        event, read only if they moved on."""
        cache = self.cache
        by_id: dict[uuid.UUID, str] = {}
        known: dict[uuid.UUID, Known] = {}
        for name in wanted:
            state = cache.accounts.get(name)
            if state is None:
                by_id[account_stream_id(name)] = name
            elif recheck:
                by_id[state.stream_id] = name
                opening = cache.openings.get(name)
                if opening is not None:  # else never read from the store: in full
                    known[state.stream_id] = (opening, state.version)
        return by_id, known

    def _absorb_loaded(
        self,
        loaded: dict[uuid.UUID, tuple[StoredEvent, StoredEvent]],
        accounts: dict[uuid.UUID, str],
    ) -> None:
        cache = self.cache
        for sid, (first, last) in loaded.items():
            if first.topic == events.TOPIC_ACCOUNT_OPENED and sid in accounts:
                name = accounts[sid]
                cache.accounts[name] = events.account_state_from(first, last)
                cache.openings[name] = first
            elif first.topic == events.TOPIC_ENTRY:
                state = events.entry_state_from(first, last)
                cache.entries[state.entry_id] = state
            elif first.topic == events.TOPIC_ASSET_DECLARED:
                body = events.decode(first.state, unseal=False)
                cache.assets[body["code"]] = Asset(body["code"], body["scale"])


def _used_inside(key: str) -> IdempotencyConflict:
    return IdempotencyConflict(f"key {key!r} was already used inside an atomic batch")


def _read_from(
    store: StateReader,
    key_ids: set[uuid.UUID],
    ids: list[uuid.UUID],
    known: dict[uuid.UUID, Known],
) -> tuple[dict[uuid.UUID, KeyRecord], dict[uuid.UUID, tuple[StoredEvent, StoredEvent]]]:
    """``store.read``, naming known streams only when there are any (a store of the
    port's earlier shape, without them, reads as it did)."""
    if known:
        return store.read(key_ids, ids, known=known)
    return store.read(key_ids, ids)

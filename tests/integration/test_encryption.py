"""Encryption at rest (ledger.adapters.crypto): with a keyring, no note, description or
metadata value is stored in plain text (the raw tables and files are scanned), yet
everything reads, projects, exports and audits; rotating the key keeps old events
readable; a missing key is a clear error."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from ledger import Ledger
from ledger import payments as pay
from ledger.adapters.crypto import DecryptionError, Keyring, keyring_from_env, new_key
from ledger.adapters.jsonl import export_lines, import_lines
from ledger.projections import BalancesView, FeedView, ProjectionRunner, statement
from ledger.projections.audit import audit

SECRETS = ("SECRET-NOTE-1", "SECRET-DESC-2", "SECRET-META-3", "SECRET-MAIL-4", "SECRET-REQ-5")


def write_personal_data(books: Ledger, tag: str = "") -> None:
    books.open_account(f"bank{tag}", "USD", normal="debit")
    books.open_account(
        f"alice{tag}", "USD", owner=f"user:alice{tag}", metadata={"email": "SECRET-MAIL-4"}
    )
    books.open_account(f"bob{tag}", "USD", owner=f"user:bob{tag}")
    books.transfer(
        f"fund{tag}", debit=f"bank{tag}", credit=f"alice{tag}", amount="100", asset="USD"
    )
    pay.send(
        books,
        f"p2p{tag}",
        sender=f"alice{tag}",
        recipient=f"bob{tag}",
        amount="10",
        asset="USD",
        note="SECRET-NOTE-1",
        visibility="public",
    )
    pay.charge(
        books,
        f"charge{tag}",
        customer=f"alice{tag}",
        merchant=f"bob{tag}",
        amount="5",
        asset="USD",
        description="SECRET-DESC-2",
        metadata={"ssn": "SECRET-META-3"},
    )
    pay.request_money(
        books,
        f"req{tag}",
        requester=f"bob{tag}",
        payer=f"alice{tag}",
        amount="1",
        asset="USD",
        note="SECRET-REQ-5",
    )


def raw_contents(url: str) -> bytes:
    """Every byte the database holds for the ledger and its read models."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    out = []
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        for table in tables:
            out += [str(r[0]) for r in conn.execute(f'SELECT t::text FROM "{table}" t')]
    return "\n".join(out).encode()


def holds(raw: bytes, text: str) -> bool:
    """Whether ``text`` is in ``raw`` as is or hex-encoded (PostgreSQL's bytea text)."""
    return text.encode() in raw or text.encode().hex().encode() in raw


def leaks(raw: bytes) -> list[str]:
    return [secret for secret in SECRETS if holds(raw, secret)]


def test_no_personal_data_in_plain_text_and_everything_still_works(store_url: str) -> None:
    keyring = Keyring({"k1": new_key()}, current="k1")
    with Ledger.open(store_url, keyring=keyring) as books:
        write_personal_data(books)
        runner = ProjectionRunner.for_ledger(books, [BalancesView(), FeedView()])
        runner.catch_up()
        with runner.views.snapshot() as w:
            page = FeedView.feed(w, "user:bob")
            lines = statement(
                w, "alice", datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(1)
            )
        runner.close()
        assert "SECRET-NOTE-1" in [item.note for item in page.items]
        assert lines is not None
        assert "SECRET-DESC-2" in [line.description for line in lines.lines]
        exported = b"".join(export_lines(books))
        for secret in ("SECRET-NOTE-1", "SECRET-DESC-2", "SECRET-META-3", "SECRET-REQ-5"):
            assert secret.encode() in exported
        # Imported into the same books, every line is an entry that is already there.
        lines = exported.splitlines()
        report = import_lines(books, lambda: iter(lines))
        assert (report.replayed, report.conflicts) == (len(lines), 0), report.errors
        assert books.balance("alice").posted == 85
        assert audit(books.store).clean
    raw = raw_contents(store_url)
    assert holds(raw, '"sealed":"k1:')  # sealed values are there...
    assert leaks(raw) == []  # ...and no secret in plain text


def test_without_a_keyring_the_same_data_is_plain(store_url: str) -> None:
    with Ledger.open(store_url) as books:
        write_personal_data(books)
    assert set(leaks(raw_contents(store_url))) >= {"SECRET-NOTE-1", "SECRET-DESC-2"}


def test_key_rotation_keeps_old_events_readable(store_url: str) -> None:
    old, new = new_key(), new_key()
    with Ledger.open(store_url, keyring=Keyring({"k1": old}, current="k1")) as books:
        write_personal_data(books, "-a")
    rotated = Keyring({"k2": new, "k1": old}, current="k2")
    with Ledger.open(store_url, keyring=rotated) as books:
        write_personal_data(books, "-b")
        exported = b"".join(export_lines(books))
        assert exported.count(b"SECRET-DESC-2") == 2  # one sealed with k1, one with k2
        assert audit(books.store).clean
    raw = raw_contents(store_url)
    assert holds(raw, '"sealed":"k1:') and holds(raw, '"sealed":"k2:')
    assert leaks(raw) == []
    # retiring k1 too early, or losing the keyring: a clear, typed error
    only_new = Keyring({"k2": new}, current="k2")
    with (
        Ledger.open(store_url, keyring=only_new) as books,
        pytest.raises(DecryptionError, match="'k1'"),
    ):
        b"".join(export_lines(books))
    with Ledger.open(store_url) as books, pytest.raises(DecryptionError):
        b"".join(export_lines(books))


def test_a_wrong_key_is_detected() -> None:
    ring = Keyring({"k1": new_key()}, current="k1")
    sealed = ring.seal(b"hello")
    other = Keyring({"k1": new_key()}, current="k1")
    with pytest.raises(DecryptionError):
        other.open(sealed)
    assert ring.open(sealed) == b"hello"


def test_keyring_from_the_environment_format() -> None:
    k1, k2 = new_key(), new_key()
    ring = Keyring.from_env(f"k2:{k2},k1:{k1}")
    assert ring.current == "k2"
    assert Keyring({"k2": k2}, current="k2").open(ring.seal(b"x")) == b"x"
    assert ring.open(Keyring({"k1": k1}, current="k1").seal(b"y")) == b"y"
    with pytest.raises(ValueError, match="LEDGER_KEYS"):
        Keyring.from_env("nonsense")


def test_two_ledgers_in_one_process_each_keep_their_own_keyring(
    store_url: str, tmp_path: Path
) -> None:
    """The keyring is the ledger's, not the process's: ledgers with different keyrings
    (and one without) write side by side from threads, each reads its own data and
    not the other's, and the write side needs no key at all."""
    ring_a = Keyring({"a1": new_key()}, current="a1")
    ring_b = Keyring({"b1": new_key()}, current="b1")
    url_b, url_p = f"sqlite:///{tmp_path}/b.db", f"sqlite:///{tmp_path}/plain.db"

    def pay_from(books: Ledger, tag: str) -> None:
        for i in range(20):
            books.transfer(
                f"{tag}-{i}",
                debit="bank",
                credit="alice",
                amount="1",
                asset="USD",
                description=f"SECRET-{tag.upper()}-{i}",
            )

    with (
        Ledger.open(store_url, keyring=ring_a) as a,
        Ledger.open(url_b, keyring=ring_b) as b,
        Ledger.open(url_p) as plain,
    ):
        for books in (a, b, plain):
            books.open_account("bank", "USD", normal="debit")
            books.open_account("alice", "USD", metadata={"email": "SECRET-MAIL-4"})
        with ThreadPoolExecutor(3) as pool:
            for done in [
                pool.submit(pay_from, x, t) for x, t in ((a, "a"), (b, "b"), (plain, "p"))
            ]:
                done.result()
        for books, tag in ((a, b"SECRET-A-7"), (b, b"SECRET-B-7"), (plain, b"SECRET-P-7")):
            assert tag in b"".join(export_lines(books))
        runner = ProjectionRunner.for_ledger(a, [BalancesView()])
        runner.catch_up()
        with runner.views.snapshot() as w:
            lines = statement(
                w, "alice", datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(1)
            )
        runner.close()
        assert lines is not None and "SECRET-A-7" in [line.description for line in lines.lines]
    # each store holds its own ledger's seals only, the plain one plain text
    raw_a, raw_b, raw_p = (raw_contents(u) for u in (store_url, url_b, url_p))
    assert holds(raw_a, '"sealed":"a1:') and not holds(raw_a, '"sealed":"b1:')
    assert holds(raw_b, '"sealed":"b1:') and not holds(raw_b, '"sealed":"a1:')
    assert not holds(raw_a, "SECRET-A-7") and not holds(raw_a, "SECRET-MAIL-4")
    assert not holds(raw_b, "SECRET-B-7")
    assert holds(raw_p, "SECRET-P-7") and holds(raw_p, "SECRET-MAIL-4")
    # another ledger's keyring does not open them
    for url, ring, other in ((store_url, ring_b, "'a1'"), (url_b, ring_a, "'b1'")):
        with (
            Ledger.open(url, keyring=ring) as wrong,
            pytest.raises(DecryptionError, match=other),
        ):
            b"".join(export_lines(wrong))
    # writing needs no key: a ledger without one pays on the encrypted store
    with Ledger.open(store_url) as keyless:
        pay_from(keyless, "k")
        assert keyless.balance("alice").posted == 40


def test_the_environment_is_read_only_when_asked(tmp_path: Path) -> None:
    """A malformed LEDGER_KEYS breaks nothing at import; the CLI, which asks for it,
    refuses it in one line; a valid one encrypts what the CLI writes."""
    env = {**os.environ, "LEDGER_KEYS": "garbage"}
    imported = subprocess.run(
        [sys.executable, "-c", "import ledger, ledger.adapters.crypto; print('ok')"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    url = f"sqlite:///{tmp_path}/cli.db"
    refused = subprocess.run(
        [
            sys.executable,
            "-c",
            "from ledger.adapters.cli import main; main()",
            "--store",
            url,
            "balances",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0
    assert "LEDGER_KEYS" in refused.stderr and refused.stdout == ""
    assert keyring_from_env({}) is None and keyring_from_env({"LEDGER_KEYS": " "}) is None
    ring = keyring_from_env({"LEDGER_KEYS": f"k9:{new_key()}"})
    assert ring is not None and ring.current == "k9"


def test_keys_in_the_environment_without_a_keyring_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LEDGER_KEYS", f"k1:{new_key()}")
    with caplog.at_level(logging.WARNING, logger="ledger"):
        Ledger.open(f"sqlite:///{tmp_path}/plain.db").close()
        assert "ledger.keys_in_environment_not_used" in caplog.text
        caplog.clear()
        Ledger.open(f"sqlite:///{tmp_path}/sealed.db", keyring=keyring_from_env()).close()
        assert "keys_in_environment" not in caplog.text

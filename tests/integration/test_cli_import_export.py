"""``ledger import`` and ``ledger export`` as a user runs them, on every store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from ledger import Ledger
from ledger.model import entry_id_for_key
from tests.integration.test_cli import ledger

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def all_kinds(url: str) -> None:
    """A store with every kind of entry: posted, pending, capture, void, expire, reversal,
    request (paid and declined), decline."""
    clock = [T0]
    with Ledger.open(url, clock=lambda: clock[0]) as books:
        books.declare_asset("PTS", 3)
        books.open_account("bank", "USD", normal="debit")
        books.open_account("alice", "USD", min_balance="0")
        books.open_account("shop", "USD")
        books.open_account("points:pool", "PTS")
        books.open_account("points:alice", "PTS")
        books.transfer(
            "dep",
            debit="bank",
            credit="alice",
            amount="100",
            asset="USD",
            description="deposit",
            metadata={"ref": "r-1"},
        )
        books.post(
            "pts",
            [("points:pool", "1.250", "PTS"), ("points:alice", "-1.250", "PTS")],
            effective_at=T0 - timedelta(days=3),
        )
        held = books.hold(
            "auth",
            [("alice", "30", "USD"), ("shop", "-30", "USD")],
            expires_at=T0 + timedelta(days=1),
        )
        books.post_hold("cap", held.entry_id, [("alice", "20", "USD"), ("shop", "-20", "USD")])
        voided = books.hold("auth2", [("alice", "5", "USD"), ("shop", "-5", "USD")])
        books.void_hold("void2", voided.entry_id)
        books.hold(
            "auth3",
            [("alice", "7", "USD"), ("shop", "-7", "USD")],
            expires_at=T0 + timedelta(hours=2),
        )
        clock[0] = T0 + timedelta(hours=3)
        books.expire_due()
        refund = books.reverse(
            "refund", entry_id_for_key("cap"), [("shop", "5", "USD"), ("alice", "-5", "USD")]
        )
        assert refund.ok
        paid = books.request_payment(
            "req", requester="shop", payer="alice", amount="3", asset="USD", description="tip"
        )
        books.pay_request("req:pay", paid.entry_id, metadata={"flow": "request"})
        declined = books.request_payment(
            "req2", requester="shop", payer="alice", amount="4", asset="USD"
        )
        books.decline_request("req2:no", declined.entry_id, description="no")


def test_case_14_replay_determinism_export_import_export_round_trip(
    store_url: str, tmp_path: Path
) -> None:
    all_kinds(store_url)
    first = tmp_path / "first.jsonl"
    assert ledger(store_url, "export", str(first)).returncode == 0
    kinds = {json.loads(line).get("kind", "posted") for line in first.read_text().splitlines()}
    assert kinds == {
        "asset",
        "account",
        "posted",
        "pending",
        "capture",
        "void",
        "expire",
        "reversal",
        "request",
        "decline",
    }
    target = f"sqlite:///{tmp_path}/copy.db"
    imported = ledger(target, "import", str(first), "--format", "json")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    second = tmp_path / "second.jsonl"
    assert ledger(target, "export", str(second)).returncode == 0
    assert second.read_bytes() == first.read_bytes()
    again = json.loads(ledger(target, "import", str(first), "--format", "json").stdout)
    assert (again["applied"], again["replayed"]) == (0, len(first.read_text().splitlines()))
    assert again["lines"] == len(first.read_text().splitlines())
    assert ledger(target, "audit").returncode == 0


def test_an_export_imported_into_the_store_it_came_from_replays_every_line(
    store_url: str, tmp_path: Path
) -> None:
    """The entries were written through the library (requests without times, captures
    and reversals with or without legs): the export writes them resolved, and importing
    it into the same store (as after restoring a backup) replays each of them instead of
    reporting conflicts; a line changed since still conflicts."""
    all_kinds(store_url)
    with Ledger.open(store_url) as books:
        held = books.hold("auth4", [("alice", "9", "USD"), ("shop", "-9", "USD")])
        books.post_hold("cap4", held.entry_id)  # no legs: the whole hold
        books.reverse("rev4", entry_id_for_key("cap4"))  # no legs: all of it
        books.transfer("now", debit="bank", credit="alice", amount="1.50", asset="USD")
        before = books.store.max_position()
    dump = tmp_path / "dump.jsonl"
    assert ledger(store_url, "export", str(dump)).returncode == 0
    lines = dump.read_text().splitlines()
    again = ledger(store_url, "import", str(dump), "--format", "json")
    assert again.returncode == 0, again.stdout + again.stderr
    report = json.loads(again.stdout)
    assert (report["replayed"], report["conflicts"], report["applied"]) == (len(lines), 0, 0)
    changed = [line for line in lines if '"key":"now"' in line]
    assert len(changed) == 1
    source = tmp_path / "changed.jsonl"
    source.write_text(changed[0].replace('"1.50"', '"1.60"').replace('"-1.50"', '"-1.60"') + "\n")
    conflict = ledger(store_url, "import", str(source), "--format", "json")
    assert conflict.returncode == 1
    assert json.loads(conflict.stdout)["conflicts"] == 1
    with Ledger.open(store_url) as books:
        assert books.store.max_position() == before


def test_invalid_lines_are_all_reported_and_nothing_applies(store_url: str, tmp_path: Path) -> None:
    good = (
        '{"key": "ok-1", "effective_at": "2026-01-05", "description": "x", "legs": ['
        '{"account": "a", "amount": "1.00", "currency": "USD"},'
        '{"account": "b", "amount": "-1.00", "currency": "USD"}], "metadata": {}}'
    )
    lines = [
        good,
        "{not json",
        good.replace("ok-1", "f1").replace('"1.00"', "1.5"),
        good.replace("ok-1", "u1").replace('"-1.00"', '"-2.00"'),
        good.replace("ok-1", "c1").replace("USD", "XYZ"),
        good.replace("ok-1", "d1").replace('"1.00"', '"1.001"').replace('"-1.00"', '"-1.001"'),
        good.replace("ok-1", "t1").replace('"2026-01-05"', '"9999-12-31T23:59:59-01:00"'),
        good.replace("ok-1", "s1").replace('"1.00"', '"1_000"').replace('"-1.00"', '"-1_000"'),
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    result = ledger(store_url, "import", str(source))
    assert result.returncode == 1
    for number in (2, 3, 4, 5, 6, 7, 8):
        assert f"line {number}:" in result.stderr
    assert "nothing applied" in result.stderr
    with Ledger.open(store_url) as books:
        assert books.store.max_position() == 0
    skipped = ledger(store_url, "import", str(source), "--skip-invalid", "--format", "json")
    assert json.loads(skipped.stdout)["applied"] == 1


def test_a_key_used_twice_in_a_file_for_two_requests_is_an_invalid_line(
    store_url: str, tmp_path: Path
) -> None:
    line = (
        '{"key": "%s", "effective_at": "2026-01-05", "description": "x", "legs": ['
        '{"account": "a", "amount": "%s", "currency": "USD"},'
        '{"account": "b", "amount": "-%s", "currency": "USD"}], "metadata": {}}'
    )
    source = tmp_path / "in.jsonl"
    # A byte order mark first (as some editors save UTF-8), then k1 twice for two
    # requests and once more for the first request (a replay, not an error).
    source.write_text(
        "\ufeff"
        + "\n".join([line % ("k1", "5.00", "5.00"), line % ("k1", "6.00", "6.00"),
                      line % ("k2", "1.00", "1.00"), line % ("k1", "5.00", "5.00")])
        + "\n"
    )  # fmt: skip
    result = ledger(store_url, "import", str(source))
    assert result.returncode == 1
    assert "line 2: key 'k1' was used by line 1 for another request" in result.stderr
    assert "line 1:" not in result.stderr and "line 4:" not in result.stderr
    with Ledger.open(store_url) as books:
        assert books.store.max_position() == 0
    skipped = ledger(store_url, "import", str(source), "--skip-invalid", "--format", "json")
    assert skipped.returncode == 1  # applied the valid lines; not the whole file
    report = json.loads(skipped.stdout)
    assert (report["applied"], report["replayed"], report["invalid"]) == (2, 1, 1)
    with Ledger.open(store_url) as books:
        assert books.balance("b").posted == Decimal("6.00")  # 5.00 + 1.00, never 6.00 + 1.00


def test_conflicting_key_and_unknown_account(store_url: str, tmp_path: Path) -> None:
    line = (
        '{"key": "k1", "effective_at": "2026-01-05T10:00:00Z", "legs": ['
        '{"account": "a", "amount": "1", "currency": "USD"},'
        '{"account": "b", "amount": "-1", "currency": "USD"}]}'
    )
    source = tmp_path / "a.jsonl"
    source.write_text(line + "\n")
    assert ledger(store_url, "import", str(source)).returncode == 0
    source.write_text(line.replace('"1"', '"2"').replace('"-1"', '"-2"') + "\n")
    conflict = ledger(store_url, "import", str(source), "--format", "json")
    assert conflict.returncode == 1
    assert json.loads(conflict.stdout)["conflicts"] == 1
    source.write_text(line.replace("k1", "k2").replace('"b"', '"nobody"') + "\n")
    unknown = ledger(store_url, "import", str(source), "--no-open-accounts")
    assert unknown.returncode == 1
    assert "unknown_account" in unknown.stderr


def test_import_from_stdin(store_url: str) -> None:
    line = (
        '{"key": "s1", "legs": [{"account": "a", "amount": "3", "currency": "EUR"},'
        '{"account": "b", "amount": "-3", "currency": "EUR"}]}'
    )
    result = ledger(store_url, "import", "-", stdin=line + "\n")
    assert result.returncode == 0, result.stderr
    assert "1 applied" in result.stdout


def test_a_payment_line_with_other_amounts_than_its_request_is_invalid(
    store_url: str, tmp_path: Path
) -> None:
    """A payment pays its request's terms: a line that says other amounts is refused
    before anything is applied, whether the request is an earlier line of the file or
    already in the store (where it was counted as applied, the file not matching)."""
    all_kinds(store_url)
    dump = tmp_path / "dump.jsonl"
    assert ledger(store_url, "export", str(dump)).returncode == 0
    lines = dump.read_text().splitlines()
    pay = next(i for i, line in enumerate(lines) if '"key":"req:pay"' in line)
    assert '"3.00"' in lines[pay] and '"-3.00"' in lines[pay]
    lines[pay] = lines[pay].replace('"3.00"', '"9.00"').replace('"-3.00"', '"-9.00"')
    changed = tmp_path / "changed.jsonl"
    changed.write_text("\n".join(lines) + "\n")
    fresh = f"sqlite:///{tmp_path}/fresh.db"
    result = ledger(fresh, "import", str(changed))
    assert result.returncode == 1
    assert f"line {pay + 1}: legs: a payment's legs are the terms" in result.stderr
    assert "nothing applied" in result.stderr
    again = ledger(store_url, "import", str(changed))
    assert again.returncode == 1 and f"line {pay + 1}: legs:" in again.stderr

"""The CLI's books conventions, by subprocess on every store: one sign convention in
machine output (debits positive, as in the import format), a trial balance whose
totals agree, and RFC 3339 times with a zone (or a date) in every time option."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

from ledger import Ledger
from tests.integration.test_cli import ledger as cli

CHART = [  # account, asset, normal
    ("Assets:Bank", "USD", "debit"),
    ("Assets:Broker", "EUR", "debit"),
    ("Expenses:Rent", "USD", "debit"),
    ("Expenses:Travel", "JPY", "debit"),
    ("Income:Salary", "USD", "credit"),
    ("Liabilities:Card", "EUR", "credit"),
    ("Equity:Opening", "JPY", "credit"),
    ("Points:Earned", "PTS", "debit"),
    ("Points:Liability", "PTS", "credit"),
]


def _books(url: str) -> None:
    with Ledger.open(url) as books:
        books.declare_asset("PTS", 0)
        for account, asset, normal in CHART:
            books.open_account(account, asset, normal=normal)  # type: ignore[arg-type]

        entries = [  # key, effective at, (debited account, credited account, amount, asset)
            ("salary", "2026-01-30T23:00:00Z", "Assets:Bank", "Income:Salary", "3000.00", "USD"),
            ("rent", "2026-01-31T01:00:00Z", "Expenses:Rent", "Assets:Bank", "1200.00", "USD"),
            ("card", "2026-01-15T12:00:00Z", "Assets:Broker", "Liabilities:Card", "250.50", "EUR"),
            ("trip", "2026-01-20T00:00:00Z", "Expenses:Travel", "Equity:Opening", "12000", "JPY"),
            ("points", "2026-01-21T00:00:00Z", "Points:Earned", "Points:Liability", "75", "PTS"),
        ]  # fmt: skip
        for key, at, debit, credit, amount, asset in entries:
            books.transfer(
                key,
                debit=debit,
                credit=credit,
                amount=amount,
                asset=asset,
                effective_at=datetime.fromisoformat(at),
            )


def _json(url: str, *args: str) -> object:
    result = cli(url, *args, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_balances_are_signed_sum_to_zero_and_equal_the_exported_legs(store_url: str) -> None:
    _books(store_url)
    balances = _json(store_url, "balances")
    assert isinstance(balances, dict)
    per_asset: dict[str, Decimal] = defaultdict(Decimal)
    for account, asset, normal in CHART:
        row = balances[account]
        assert (row["asset"], row["normal"]) == (asset, normal)
        per_asset[asset] += Decimal(row["balance"])
    assert per_asset and all(total == 0 for total in per_asset.values()), per_asset
    assert Decimal(balances["Assets:Bank"]["balance"]) == Decimal("1800.00")
    assert Decimal(balances["Income:Salary"]["balance"]) == Decimal("-3000.00")

    exported = cli(store_url, "export", "-")
    assert exported.returncode == 0 and exported.stderr == ""
    legs: dict[str, Decimal] = defaultdict(Decimal)
    for line in exported.stdout.splitlines():
        entry = json.loads(line)
        for leg in entry.get("legs", []):
            legs[leg["account"]] += Decimal(leg["amount"])
    assert {a: Decimal(b["balance"]) for a, b in balances.items()} == dict(legs)

    trial = _json(store_url, "trial-balance")
    assert isinstance(trial, dict)
    assert set(trial) == {"USD", "EUR", "JPY", "PTS"}
    for book in trial.values():
        assert book["debits"] == book["credits"]
        for line in book["accounts"]:
            signed = Decimal(line["debit"]) - Decimal(line["credit"])
            assert signed == Decimal(balances[line["account"]]["balance"])
    human = cli(store_url, "trial-balance")
    assert "total" in human.stdout and human.stderr == ""


def test_time_options_take_rfc3339_with_a_zone_and_dates(store_url: str) -> None:
    _books(store_url)
    # salary (23:00Z on the 30th) is before midnight UTC, rent (01:00Z on the 31st) after
    cases = {
        "2026-01-31T00:00:00Z": datetime(2026, 1, 31, tzinfo=UTC),
        "2026-01-31T02:00:00+02:00": datetime(2026, 1, 31, tzinfo=UTC),
        "2026-01-31": datetime(2026, 1, 31, tzinfo=UTC),
        "2026-01-31T01:30:00Z": datetime(2026, 1, 31, 1, 30, tzinfo=UTC),
        "2026-01-30T19:00:00-05:00": datetime(2026, 1, 31, tzinfo=UTC),
    }
    postings = {
        datetime(2026, 1, 30, 23, tzinfo=UTC): Decimal("3000.00"),
        datetime(2026, 1, 31, 1, tzinfo=UTC): Decimal("-1200.00"),
    }
    for text, instant in cases.items():
        expected = sum((v for at, v in postings.items() if at <= instant), Decimal(0))
        data = _json(store_url, "balances", "--as-of", text, "--account", "Assets:Bank")
        assert isinstance(data, dict)
        assert Decimal(data["Assets:Bank"]["balance"]) == expected, text
        trial = _json(store_url, "trial-balance", "--as-of", text)
        assert isinstance(trial, dict)
        assert trial["USD"]["debits"] == trial["USD"]["credits"], text
    bad = cli(store_url, "balances", "--as-of", "31/01/2026")
    assert bad.returncode == 2 and "RFC 3339" in bad.stderr and bad.stdout == ""
    audit = cli(store_url, "audit", "--until", "2100-01-01T00:00:00+01:00")
    assert audit.returncode == 0, audit.stderr


def test_version_and_errors_on_stderr(store_url: str) -> None:
    version = cli(store_url, "--version")
    assert version.returncode == 0 and version.stdout.startswith("ledger, version ")
    _books(store_url)
    conflict = '{"key":"salary","legs":[{"account":"Assets:Bank","amount":"1.00","currency":"USD"},{"account":"Income:Salary","amount":"-1.00","currency":"USD"}]}\n'  # noqa: E501
    result = cli(store_url, "import", "-", stdin=conflict)
    assert result.returncode == 1
    assert "salary" in result.stderr  # the conflict is reported on stderr
    assert "salary" not in result.stdout  # stdout holds only the summary
    assert "1 conflicts" in result.stdout


def test_skip_invalid_counts_each_line_once(store_url: str) -> None:
    good = '{"key":"g1","legs":[{"account":"a","amount":"1.00","currency":"USD"},{"account":"b","amount":"-1.00","currency":"USD"}]}'  # noqa: E501
    unknown_asset = good.replace('"g1"', '"g2"').replace("USD", "XYZ")
    too_precise = good.replace('"g1"', '"g3"').replace("1.00", "1.001")
    lines = "\n".join([good, unknown_asset, "{not json", too_precise]) + "\n"
    result = cli(store_url, "import", "-", "--skip-invalid", stdin=lines)
    assert "1 applied, 0 already applied, 0 rejected, 0 conflicts, 3 invalid of 4 lines" in (
        result.stdout
    ), result.stdout + result.stderr
    assert [line.split(":")[1].strip() for line in result.stderr.splitlines()] == [
        "line 2",
        "line 3",
        "line 4",
    ]
    assert all(line.startswith("ledger: ") for line in result.stderr.splitlines())


def _every_kind(url: str) -> None:
    """A store with every entry kind and every lifecycle change."""
    from datetime import timedelta

    from ledger import payments as pay

    now = [datetime(2026, 2, 1, 12, tzinfo=UTC)]
    with Ledger.open(url, clock=lambda: now[0]) as books:
        books.open_account("bank", "USD", normal="debit")
        books.open_account("fees", "USD", owner="platform", metadata={"gl": "4000"})
        for user in ("ann", "ben", "cat"):
            books.open_account(f"w:{user}", "USD", min_balance="0", owner=f"user:{user}")
            books.transfer(
                f"fund-{user}", debit="bank", credit=f"w:{user}", amount="100", asset="USD"
            )
        pay.send(
            books,
            "p1",
            sender="w:ann",
            recipient="w:ben",
            amount="10",
            asset="USD",
            fee="0.50",
            fee_account="fees",
        )
        held = pay.send(
            books, "p2", sender="w:ann", recipient="w:cat", amount="5", asset="USD", mode="standard"
        )
        pay.settle_p2p(books, "p2-settle", held.entry_id)
        voided = pay.send(
            books, "p3", sender="w:ben", recipient="w:cat", amount="3", asset="USD", mode="standard"
        )
        pay.cancel_p2p(books, "p3-cancel", voided.entry_id)
        pay.send(
            books,
            "p4",
            sender="w:cat",
            recipient="w:ann",
            amount="2",
            asset="USD",
            mode="standard",
            settle_by=now[0] + timedelta(hours=1),
        )
        charge = pay.charge(
            books,
            "c1",
            customer="w:ben",
            merchant="w:cat",
            amount="20",
            asset="USD",
            fee="1",
            platform="fees",
        )
        pay.refund(books, "c1-refund", charge.entry_id, amount="5")
        request = pay.request_money(
            books, "r1", requester="w:ann", payer="w:ben", amount="4", asset="USD"
        )
        pay.accept_request(books, "r1-pay", request.entry_id)
        declined = pay.request_money(
            books, "r2", requester="w:ann", payer="w:cat", amount="4", asset="USD"
        )
        pay.decline_request(books, "r2-no", declined.entry_id)
        now[0] += timedelta(hours=2)
        assert [o.ok for o in books.expire_due()] == [True]
        books.change_limits("lim-ben", "w:ben", min_balance="-25", max_balance="500")
        books.freeze("frz-cat", "w:cat", mode="debits", reason="review")
        books.unfreeze("unfrz-cat", "w:cat")
        books.freeze("frz-ann", "w:ann", mode="all")
        books.open_account("w:old", "USD")
        books.close_account("close-old", "w:old", reason="unused")


def _state(url: str) -> dict[str, object]:
    """What the books say: balances, statements, rules."""
    accounts = ["bank", "fees", "w:ann", "w:ben", "w:cat", "w:old"]
    out: dict[str, object] = {"balances": _json(url, "balances")}
    for account in accounts:
        stmt = _json(url, "statement", account, "--from", "2026-01-01", "--to", "2027-01-01")
        assert isinstance(stmt, dict)
        out[f"statement {account}"] = [
            (ln["effective_at"], ln["amount"], ln["running"]) for ln in stmt["lines"]
        ] + [stmt["opening"], stmt["closing"], stmt["normal"]]
    with Ledger.open(url) as books:
        for account in accounts:
            b = books.balance(account)
            out[f"rules {account}"] = (
                b.normal, b.min_balance, b.max_balance, b.status, b.freeze, b.owner,
                b.posted, b.pending_out, b.pending_in,
            )  # fmt: skip
    return out


def test_export_import_restores_the_same_books(store_url: str, tmp_path: object) -> None:
    _every_kind(store_url)
    first = cli(store_url, "export", "-")
    assert first.returncode == 0 and first.stderr == ""
    restored = f"sqlite:///{tmp_path}/restored.db"
    imported = cli(restored, "import", "-", stdin=first.stdout)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    again = cli(restored, "export", "-")
    assert again.stdout == first.stdout
    assert _state(restored) == _state(store_url)
    for url in (store_url, restored):
        assert cli(url, "audit").returncode == 0
        with Ledger.open(url) as books:
            # the bounds came back: an overdraft of ben's credit line is refused
            overdraft = books.submit(
                {
                    "kind": "post_entry",
                    "key": "overdraft",
                    "legs": [
                        {"account": "w:ben", "amount": "600", "asset": "USD"},
                        {"account": "bank", "amount": "-600", "asset": "USD"},
                    ],
                }
            )
            assert overdraft.code == "balance_rule_violated"
            frozen = books.submit(
                {
                    "kind": "post_entry",
                    "key": "frozen",
                    "legs": [
                        {"account": "bank", "amount": "1", "asset": "USD"},
                        {"account": "w:ann", "amount": "-1", "asset": "USD"},
                    ],
                }
            )
            assert frozen.code == "account_frozen"


def test_json_output_stays_data_when_lines_are_refused(store_url: str) -> None:
    good = '{"key":"g1","legs":[{"account":"a","amount":"1.00","currency":"USD"},{"account":"b","amount":"-1.00","currency":"USD"}]}'  # noqa: E501
    conflict = good.replace("1.00", "2.00")
    result = cli(store_url, "import", "-", "--format", "json", stdin=good + "\n")
    assert json.loads(result.stdout)["applied"] == 1
    result = cli(store_url, "import", "-", "--format", "json", stdin=conflict + "\n")
    assert result.returncode == 1
    report = json.loads(result.stdout)  # still one JSON document
    assert report["conflicts"] == 1 and report["errors"][0]["line"] == 1
    exported = cli(store_url, "export", "-")
    assert [json.loads(line).get("kind") for line in exported.stdout.splitlines()][:2] == [
        "account",
        "account",
    ]

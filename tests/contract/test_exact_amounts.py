"""Exact arithmetic at any size: an 18-decimal asset with amounts of 36 significant
digits flows through every recipe, and through ``ledger export`` -> ``ledger import``
-> ``ledger export``, unchanged to the last unit; no amount leaves in exponent form."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from pathlib import Path

from ledger import Ledger
from ledger import payments as pay
from ledger.projections.audit import audit
from tests.integration.test_cli import ledger as cli

BIG = "123456789012345678.123456789012345678"  # 36 significant digits
TINY = "0.000000000000000001"
FUND = "900000000000000000.999999999999999999"


def _setup(books: Ledger) -> None:
    books.declare_asset("ETH", 18)
    books.open_account("bank", "ETH", normal="debit")
    for name in ("a", "b", "c", "fees", "rail"):
        books.open_account(name, "ETH", normal="debit" if name == "rail" else "credit")
    books.transfer("fund", debit="bank", credit="a", amount=FUND, asset="ETH")


def test_every_recipe_keeps_every_digit(store_url: str, tmp_path: Path) -> None:
    with localcontext(prec=100):  # the test's own sums, exact
        _every_recipe(store_url, tmp_path)


def _every_recipe(store_url: str, tmp_path: Path) -> None:
    with Ledger.open(store_url) as books:
        _setup(books)
        fund, big, tiny = Decimal(FUND), Decimal(BIG), Decimal(TINY)
        assert pay.send(
            books, "send", sender="a", recipient="b", amount=BIG, asset="ETH", fee=TINY,
            fee_account="fees",
        ).ok  # fmt: skip
        assert books.balance("b").posted == big
        assert books.balance("a").posted == fund - big - tiny
        charge = pay.charge(
            books, "charge", customer="b", merchant="c", amount=BIG, asset="ETH", fee=TINY,
            platform="fees",
        )  # fmt: skip
        assert books.balance("c").posted == big - tiny
        assert pay.refund(books, "refund", charge.entry_id, amount=TINY).ok
        assert books.balance("b").posted == tiny
        auth = pay.authorize_card(
            books, "auth", card="a", merchant="b", amount=BIG, asset="ETH",
            expires_at=datetime.now(UTC) + timedelta(days=1),
        )  # fmt: skip
        assert pay.capture_card(books, "capture", auth.entry_id, big - tiny).ok
        assert books.balance("b").posted == big
        request = pay.request_money(books, "req", requester="c", payer="a", amount=BIG, asset="ETH")
        assert pay.accept_request(books, "req-pay", request.entry_id).ok
        split = pay.split_bill(
            books, "split", requester="c", payers=["a", "b"], amount=BIG, asset="ETH"
        )
        shares = [share for _, share, _ in split.requests] + [split.requester_share]
        assert sum(shares) == big
        deposit = pay.start_deposit(books, "dep", wallet="b", rail="rail", amount=BIG, asset="ETH")
        assert pay.confirm_bank_transfer(books, "dep-ok", deposit.entry_id).ok
        assert pay.payout(books, "payout", merchant="c", rail="rail", amount=TINY).ok
        assert pay.charge_subscription(
            books, subscription="sub", period="2026-11", customer="a", merchant="c", amount=BIG,
            asset="ETH", fee=TINY, platform="fees",
        ).ok  # fmt: skip
        report = audit(books.store)
        assert report.clean, report.findings
        before = {n: books.balance(n).posted for n in ("a", "b", "c", "fees", "rail", "bank")}

    exported = cli(store_url, "export", "-")
    assert exported.returncode == 0, exported.stderr
    assert "E-" not in exported.stdout and "E+" not in exported.stdout
    (tmp_path / "books.jsonl").write_text(exported.stdout)
    restored = f"sqlite:///{tmp_path}/restored.db"
    imported = cli(restored, "import", str(tmp_path / "books.jsonl"))
    assert imported.returncode == 0, imported.stderr
    again = cli(restored, "export", "-")
    assert again.stdout == exported.stdout
    balances = json.loads(cli(restored, "balances", "--format", "json").stdout)
    for name, posted in before.items():
        # signed as debits minus credits, whatever normal side the import gave it
        normal = "debit" if name in ("bank", "rail") else "credit"
        expected = posted if normal == "debit" else posted.copy_negate()
        assert Decimal(balances[name]["balance"]) == expected, name

"""A forked child that uses or closes a read-model store (a ``ProjectionRunner``,
``open_views()``) it inherited makes a connection of its own and never ends the
parent's session on the inherited one: the parent's next catch-up works."""

from __future__ import annotations

import os

import pytest

from ledger import Ledger
from ledger.projections import BalancesView, ProjectionRunner

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("child_uses", [False, True])
def test_a_forked_child_leaves_the_parents_read_model_session(
    pg_url: str, child_uses: bool
) -> None:
    with Ledger.open(pg_url) as books:
        books.open_account("bank", "USD", normal="debit")
        books.open_account("w", "USD")
        books.transfer("k0", debit="bank", credit="w", amount="1", asset="USD")
        runner = ProjectionRunner.for_ledger(books, [BalancesView()])
        runner.catch_up()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                if child_uses:
                    with runner.views.snapshot() as w:
                        row = BalancesView.balance(w, "w")
                    code = 0 if row is not None and row.posted == 1 else 2
                else:
                    code = 0
                runner.close()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        books.transfer("k1", debit="bank", credit="w", amount="1", asset="USD")
        runner.catch_up()  # on the parent's own session, still alive
        with runner.views.snapshot() as w:
            row = BalancesView.balance(w, "w")
            assert row is not None and row.posted == 2
        runner.close()

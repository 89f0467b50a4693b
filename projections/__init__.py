"""Read side: projections built from the event log, with checkpoints.

``ProjectionRunner`` feeds projections in batches, writing each batch's view changes
and checkpoints in one transaction. Read models: ``BalancesView`` (current and as-of
balances), ``FeedView`` (the social activity feed) and ``statement`` (account
statements over the balances view's history).
Write your own projection by implementing the ``Projection`` protocol.
"""

from ledger.projections.balances import BalanceRow, BalancesView
from ledger.projections.feed import FeedItem, FeedPage, FeedView
from ledger.projections.runner import Lag, Projection, ProjectionRunner
from ledger.projections.statements import Statement, StatementLine, statement
from ledger.projections.views import ViewStore, ViewWriter

__all__ = [
    "BalanceRow",
    "BalancesView",
    "FeedItem",
    "FeedPage",
    "FeedView",
    "Lag",
    "Projection",
    "ProjectionRunner",
    "Statement",
    "StatementLine",
    "ViewStore",
    "ViewWriter",
    "statement",
]

"""Read side: projections built from the event log, with checkpoints.

``ProjectionRunner`` feeds projections in batches, writing each batch's view changes
and checkpoints in one transaction; ``BalancesView`` is the balances read model.
Write your own projection by implementing the ``Projection`` protocol.
"""

from ledger.projections.balances import BalanceRow, BalancesView
from ledger.projections.runner import Lag, Projection, ProjectionRunner
from ledger.projections.views import ViewStore, ViewWriter

__all__ = [
    "BalanceRow",
    "BalancesView",
    "Lag",
    "Projection",
    "ProjectionRunner",
    "ViewStore",
    "ViewWriter",
]

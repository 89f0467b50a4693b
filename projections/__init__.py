"""Read side: projections built from the event log (see issue: CQRS read models)."""

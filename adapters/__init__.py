"""Adapters to the outside: the SQLite and PostgreSQL stores and read-model databases,
opening a ledger from a URL (``opening``), encryption at rest (``crypto``), JSON Lines
import and export, the Kafka relay and projector, logging setup and the ``ledger`` CLI."""

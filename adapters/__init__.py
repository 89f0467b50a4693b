"""Adapters to the outside: SQLite, PostgreSQL, logging, and (later) Kafka and the CLI."""

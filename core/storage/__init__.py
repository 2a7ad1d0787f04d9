"""Persistence: ORM models, engines, transactions and migrations."""

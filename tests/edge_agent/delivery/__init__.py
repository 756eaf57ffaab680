"""Durable outbox: SQLite WAL, bounds, corruption, disk full, and the publisher on a real broker."""

"""Helpers for running the system locally and in tests: an embedded redis-server."""

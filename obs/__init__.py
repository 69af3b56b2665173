"""Observability shared by the web and the workers: structured logs."""

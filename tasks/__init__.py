"""Celery: the app (``celery -A tasks``), its config, the beat schedule and thin tasks."""
from tasks.celery import app

__all__ = ["app"]

"""The Celery app that ``celery -A tasks worker|beat|flower`` finds. A worker imports the
tasks from ``tasks.jobs`` (``include``); beat and Flower need only their names."""
from __future__ import annotations

from typing import Any

from celery import signals

from config import load_settings
from obs.logs import configure_logging
from tasks.factory import make_celery

settings = load_settings()
app = make_celery(settings, include=("tasks.jobs",))


@signals.setup_logging.connect
def _logging(**_: Any) -> None:
    """Workers and beat log as the web does (LOG_LEVEL, LOG_FORMAT), not as Celery would."""
    configure_logging(settings.log_level, settings.log_format)

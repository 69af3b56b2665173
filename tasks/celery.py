"""The Celery app that ``celery -A tasks worker|beat|flower`` finds."""
from __future__ import annotations

from config import load_settings
from tasks.config import make_celery

app = make_celery(load_settings())

import tasks.jobs  # noqa: E402,F401  (registers the tasks on ``app``)

"""One structured log line per request, carrying a request_id."""
from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

from config import Settings
from obs.logs import configure_logging

_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
log = logging.getLogger("webapp.request")


def init_app(app: Flask, settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)

    @app.before_request
    def start() -> None:
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def finish(response: Response) -> Response:
        response.headers["X-Request-ID"] = g.get("request_id", "")
        fields = {"request_id": g.get("request_id"), "method": request.method,
                  "route": request.url_rule.rule if request.url_rule else None,
                  "status": response.status_code,
                  "ms": round((time.perf_counter() - g.get("started", time.perf_counter())) * 1e3,
                              2)}
        if "feed_id" in g:
            fields["feed_id"] = g.feed_id
        if "task_id" in g:
            fields["task_id"] = g.task_id
        log.info("request", extra={"fields": fields})
        return response

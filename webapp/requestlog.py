"""What happens around every request: a request_id, one structured log line, and the
request's count and duration in the metrics."""
from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

from config import Settings
from obs.logs import configure_logging
from obs.prometheus import observe_request

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
        route = request.url_rule.rule if request.url_rule else None
        started = g.get("started")
        took_s = time.perf_counter() - started if started is not None else 0.0
        if started is not None:
            observe_request(route, request.method, response.status_code, took_s)
        if not log.isEnabledFor(logging.INFO):      # nothing is built for a line not written
            return response
        fields = {"request_id": g.get("request_id"), "method": request.method,
                  "route": route, "status": response.status_code,
                  "ms": round(took_s * 1e3, 2)}
        if "feed_id" in g:
            fields["feed_id"] = g.feed_id
        if "task_id" in g:
            fields["task_id"] = g.task_id
        log.info("request", extra={"fields": fields})
        return response

"""One error shape for everything: {"error": {"code", "message", "field"?}}."""
from __future__ import annotations

import logging

import orjson
import redis
from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from obs.prometheus import observe_redis_error
from pipeline.learning.regenerate import CellUnavailable
from store import PartitionsChanged
from webapp.validation import ApiError

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5


def json_response(body: object, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status=status, headers=headers,
                    mimetype="application/json")


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        headers = exc.headers
        if headers is None and exc.status == 401:
            headers = {"WWW-Authenticate": 'Bearer realm="admin"'}
        return json_response(exc.body(), exc.status, headers)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = (exc.name or "error").lower().replace(" ", "_")
        message = exc.description or exc.name
        if exc.code == 413:
            message = "request body over the size limit (MAX_CONTENT_LENGTH)"
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return json_response({"error": {"code": code, "message": message}}, exc.code or 500,
                             headers)

    @app.errorhandler(redis.ConnectionError)
    @app.errorhandler(redis.TimeoutError)
    @app.errorhandler(redis.BusyLoadingError)
    def store_down(exc: Exception) -> Response:
        log.warning("store unavailable: %s", type(exc).__name__)
        observe_redis_error(exc)
        return json_response({"error": {"code": "store_unavailable",
                                        "message": "the store is unreachable; retry shortly"}},
                             503, {"Retry-After": str(RETRY_AFTER_S)})

    @app.errorhandler(PartitionsChanged)
    def partitions_changed(exc: PartitionsChanged) -> Response:
        log.error("%s", exc)             # the setting and its value: for operators only
        return json_response({"error": {"code": "store_misconfigured", "message":
                                        "the service is misconfigured for its store; its "
                                        "operators have been told"}},
                             503, {"Retry-After": str(RETRY_AFTER_S)})

    @app.errorhandler(CellUnavailable)
    def cell_unavailable(exc: CellUnavailable) -> Response:
        log.warning("feed of cell %s not built: the catalogue kept changing", exc)
        return json_response({"error": {"code": "feed_rebuilding",
                                        "message": "this area's feed is being rebuilt; retry "
                                                   "in a moment"}}, 503, {"Retry-After": "1"})

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return json_response({"error": {"code": "internal_error",
                                        "message": "an unexpected error; it has been logged"}}, 500)

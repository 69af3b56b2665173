"""Access: the admin bearer token, and the dashboard's basic auth, both compared in constant
time."""
from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import request
from werkzeug.datastructures import Authorization

from webapp.runtime import runtime
from webapp.validation import ApiError

P = ParamSpec("P")
R = TypeVar("R")
BASIC = {"WWW-Authenticate": 'Basic realm="dashboard"'}
LOOPBACK = {"127.0.0.1", "::1"}


def require_admin(view: Callable[P, R]) -> Callable[P, R]:
    @wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        token = runtime().settings.admin_token
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if token is None:
            raise ApiError(401, "admin_disabled",
                           "admin calls are disabled: ADMIN_TOKEN is not set")
        expected = token.get_secret_value().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(),
                                                                 expected):
            raise ApiError(401, "unauthorized",
                           "this call needs Authorization: Bearer <ADMIN_TOKEN>")
        return view(*args, **kwargs)
    # a mark the API description reads; mypy does not model attributes set on a function
    wrapped.requires_admin = True  # type: ignore[attr-defined]
    return wrapped


def require_dashboard(view: Callable[P, R]) -> Callable[P, R]:
    """DASHBOARD_BASIC_AUTH (user:password); without it the dashboard is closed, except in
    the local demo (LOCAL_DEMO), where it is open to this machine only."""
    @wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        settings = runtime().settings
        expected = settings.dashboard_basic_auth
        if expected is None:
            if settings.local_demo and request.remote_addr in LOOPBACK:
                return view(*args, **kwargs)
            raise ApiError(401, "dashboard_disabled",
                           "the dashboard is closed: DASHBOARD_BASIC_AUTH is not set",
                           headers=BASIC)
        if not _basic_matches(request.authorization, expected.get_secret_value()):
            raise ApiError(401, "unauthorized", "the dashboard needs its user and password",
                           headers=BASIC)
        return view(*args, **kwargs)
    wrapped.requires_dashboard = True  # type: ignore[attr-defined]
    return wrapped


def _basic_matches(given: Authorization | None, expected: str) -> bool:
    user, _, password = expected.partition(":")
    if given is None or given.type != "basic":
        return False
    user_ok = hmac.compare_digest((given.username or "").encode(), user.encode())
    password_ok = hmac.compare_digest((given.password or "").encode(), password.encode())
    return user_ok and password_ok

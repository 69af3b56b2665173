"""Admin access: a bearer token compared in constant time."""
from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

from flask import request

from webapp.runtime import runtime
from webapp.validation import ApiError

F = TypeVar("F", bound=Callable)


def require_admin(view: F) -> F:
    @wraps(view)
    def wrapped(*args, **kwargs):
        token = runtime().settings.admin_token
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if token is None:
            raise ApiError(401, "admin_disabled", "admin calls are disabled: ADMIN_TOKEN is not set")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            raise ApiError(401, "unauthorized", "this call needs Authorization: Bearer <ADMIN_TOKEN>")
        return view(*args, **kwargs)
    wrapped.requires_admin = True  # type: ignore[attr-defined]
    return wrapped  # type: ignore[return-value]

"""Optional bearer-token auth for the serving app's write and management endpoints.

:func:`require_token` wraps a Starlette handler: with a token set, a request must carry
``Authorization: Bearer <token>``, compared in constant time (:func:`hmac.compare_digest`);
otherwise it gets a 401 ``{"error": ...}`` before its body is read, so nothing changes.
Prediction, metadata, health and metrics endpoints are not wrapped.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["Handler", "authorized", "require_token"]

Handler = Callable[[Request], Awaitable[Response]]


def authorized(header: str | None, token: str) -> bool:
    """Whether the ``Authorization`` header value carries ``token`` as a bearer token."""
    if not header:
        return False
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode("utf-8"), token.encode("utf-8"))


def _unauthorized(message: str) -> Response:
    body = json.dumps({"error": message}).encode("utf-8")
    headers = {"WWW-Authenticate": 'Bearer realm="conveyor"'}
    return Response(body, 401, headers=headers, media_type="application/json")


def require_token(handler: Handler, token: str | None) -> Handler:
    """``handler``, refusing requests without the bearer ``token`` (unchanged when None).

    Raises:
        ValueError: ``token`` is an empty string.
    """
    if token is None:
        return handler
    if not token:
        raise ValueError("the auth token must not be empty")

    async def guarded(request: Request) -> Response:
        header = request.headers.get("authorization")
        if header is None:
            return _unauthorized("this endpoint needs 'Authorization: Bearer <token>'")
        if not authorized(header, token):
            return _unauthorized("the bearer token is wrong")
        return await handler(request)

    guarded.__name__ = getattr(handler, "__name__", "guarded")
    guarded.__doc__ = handler.__doc__
    return guarded

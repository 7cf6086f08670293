"""The one error type every protocol codec raises."""

from __future__ import annotations

from typing import Any


class ProtocolError(Exception):
    """A request or response that breaks the protocol.

    ``status`` is the HTTP status the server should answer with (400 for a client's invalid
    argument, 404 for something not found, 413 for a body that is too large) and ``message`` names
    the offending input or field. Both protocols answer errors as ``{"error": message}``.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def to_body(self) -> dict[str, Any]:
        """The JSON error body both protocols use: ``{"error": message}``."""
        return {"error": self.message}

    def __repr__(self) -> str:
        return f"ProtocolError({self.status}, {self.message!r})"


def invalid(message: str) -> ProtocolError:
    """A 400 (invalid argument) error."""
    return ProtocolError(400, message)


def not_found(message: str) -> ProtocolError:
    """A 404 (not found) error."""
    return ProtocolError(404, message)

"""Errors a caller can act on, raised by logic modules that know nothing of HTTP.

Each class says what kind of problem it is; `visiondock.web` alone decides the HTTP status
of each kind and renders `{"detail": ..., "code": ...}`. A subclass may narrow a kind
(`visiondock.images.ImageTooLargeError` is a `TooLarge`); when it derives from two, the
first kind listed wins. Subclasses keep `DomainError`'s constructor, so an error can be
restated as its own kind with another message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class DomainError(Exception):
    """A problem the caller can fix or wait out. `code` is a short machine-readable kind;
    `details` are extra fields of the error body; `retry_after` says when trying again may work."""

    code: str = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, retry_after: int | None = None,
                 details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.retry_after = retry_after
        self.details = dict(details or {})


class InvalidInput(DomainError):
    """The request is malformed or breaks a rule: fix it and send it again."""


class InvalidContent(DomainError):
    """Well-formed, but its content cannot be used (a field that contradicts another, an image
    whose shape no model can take)."""

    code = "invalid_request"


class NotAuthenticated(DomainError):
    """No API key, or one this deployment does not accept."""

    code = "unauthorized"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    """The request contradicts what is stored (it exists already, it was decided already)."""

    code = "conflict"


class Outdated(DomainError):
    """The caller's copy changed since it was read (a stale `If-Match` etag): read it again."""

    code = "precondition_failed"


class TooLarge(DomainError):
    code = "payload_too_large"


class UnsupportedMediaType(DomainError):
    code = "unsupported_media_type"


class Unavailable(DomainError):
    """Cannot be done now (overloaded, nothing loaded yet); retrying later may work."""

    code = "unavailable"


class TimedOut(DomainError):
    """Accepted, but no answer came in time."""

    code = "timeout"

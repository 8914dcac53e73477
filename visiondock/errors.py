"""Errors a caller can act on, raised by service logic and turned into 4xx answers.

Logic modules raise these without knowing about HTTP routing; `visiondock.web`
renders them as `{"detail": ..., "code": ...}` with their status.
"""

from __future__ import annotations

_DEFAULT_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
}


def default_code(status: int) -> str:
    return _DEFAULT_CODES.get(status, "error")


class ApiError(Exception):
    """An error with the HTTP status to answer and a short machine-readable code."""

    status = 400

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.code = code or default_code(self.status)
        self.headers = headers


class BadRequest(ApiError):
    status = 400


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class Unavailable(ApiError):
    status = 503

"""Engine errors: each carries the HTTP-free facts (a code, a message that says what to
change, a status class) that the API layer turns into its JSON error body."""

from __future__ import annotations

from typing import Any


class EngineError(Exception):
    """Base: ``status`` is the HTTP status the API maps it to."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, **details: Any):
        super().__init__(message)
        self.message = message
        self.details = details


class BadInput(EngineError):
    """The request's content cannot be used (parameters, shapes, values)."""

    status = 422
    code = "invalid_input"


class NotFound(EngineError):
    status = 404
    code = "not_found"


class TooLarge(EngineError):
    status = 413
    code = "too_large"


class Unsupported(EngineError):
    status = 415
    code = "unsupported_media"


class Unavailable(EngineError):
    """Not ready (loading, warming up, broken model) or overloaded: retry later."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, retry_after: float = 1.0, **details: Any):
        super().__init__(message, **details)
        self.retry_after = retry_after


class Overloaded(Unavailable):
    code = "overloaded"

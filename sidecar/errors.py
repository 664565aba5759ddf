"""The sidecar's failures, each knowing the HTTP answer it becomes (mapped in one place, app.py)."""

from __future__ import annotations


class SidecarError(Exception):
    """A failure that becomes a small JSON error answer, never echoing upstream bytes."""

    status = 500
    error = "server_error"
    outcome = "error"  # the metric label for this failure

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class CallerError(SidecarError):
    """The request cannot be answered as asked; nothing was forwarded (SPEC §5)."""

    status = 400
    outcome = "caller_error"

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error


class RequestTooLarge(SidecarError):
    """The request body is over ``introspection.max_request_bytes``; nothing was forwarded."""

    status = 413
    error = "invalid_request"
    outcome = "too_large"


class UpstreamUnavailable(SidecarError):
    """The upstream could not be reached or broke the exchange off (502)."""

    status = 502
    error = "temporarily_unavailable"
    outcome = "upstream_unavailable"


class UpstreamTimeout(SidecarError):
    """The upstream did not answer within ``upstream.timeout`` (504)."""

    status = 504
    error = "temporarily_unavailable"
    outcome = "upstream_timeout"


class BadUpstreamAnswer(SidecarError):
    """The upstream answered 2xx with something that is not an introspection object (502)."""

    status = 502
    error = "server_error"
    outcome = "bad_upstream_answer"


class EncryptionKeysUnavailable(SidecarError):
    """The client asked for encrypted answers and its keys cannot be had now (502, never plain)."""

    status = 502
    error = "server_error"
    outcome = "encryption_keys_unavailable"

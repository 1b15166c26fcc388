"""Every way the gateway refuses or fails a request, each as OpenAI's error JSON.

`{"error": {"message": ..., "type": ..., "code": ...}}` is what OpenAI clients parse, so
every refusal uses it, whichever part of the gateway raised it.
"""

from __future__ import annotations

import json


class GatewayError(Exception):
    """A request the gateway answers itself, with `status` and OpenAI's error body."""

    status = 500
    type = "server_error"
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers or []

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.code)

    def event(self) -> bytes:
        """The error as a stream's last server-sent event, for a stream already under way
        (OpenAI's clients raise it as an APIError)."""
        return b"data: " + self.body() + b"\n\n"


def error_body(message: str, type_: str, code: str | None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "code": code, "param": None}}).encode()


class BadRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class MissingKey(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "missing_api_key"


class UnknownKey(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class AdminUnauthorized(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_admin_token"


class AdminForbidden(GatewayError):
    status = 403
    type = "permission_error"
    code = "insufficient_role"


class KeyBlocked(GatewayError):
    status = 403
    type = "permission_error"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class BodyTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, rule: str, tier: str, headers: list[tuple[bytes, bytes]]):
        super().__init__(message, headers=headers)
        self.type = rule
        self.tier = tier


class UpstreamUnreachable(GatewayError):
    """No connection to the upstream, or it closed the connection before answering."""

    status = 502
    type = "upstream_error"
    code = "upstream_unreachable"


class UpstreamBadResponse(GatewayError):
    """The upstream answered, but the answer broke off or cannot be read."""

    status = 502
    type = "upstream_error"
    code = "upstream_bad_response"


class LimiterUnavailable(GatewayError):
    status = 503
    type = "server_error"
    code = "rate_limiter_unavailable"


class UpstreamTimeout(GatewayError):
    """The upstream sent nothing for `upstream.timeout`, before or during its answer."""

    status = 504
    type = "upstream_error"
    code = "upstream_timeout"

"""Client side of authentication: a channel that sends ``authorization: Bearer <token>`` on every call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import grpc

from oncohabitat.common.security import ClientSecurity


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: Any
    compression: Any


class TokenInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the bearer token to the metadata of every call (unary and streaming)."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, details: grpc.ClientCallDetails) -> _CallDetails:
        metadata = [m for m in (details.metadata or ()) if m[0] != "authorization"]
        metadata.append(self._header)
        return _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def _call(self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._details(details), request)

    intercept_unary_unary = _call
    intercept_unary_stream = _call
    intercept_stream_unary = _call
    intercept_stream_stream = _call


def secure_channel(target: str, options: list[tuple[str, Any]], security: ClientSecurity) -> grpc.Channel:
    """A channel to ``target``: TLS when ``security`` has credentials, the token on every call when it has one."""
    if security.credentials is not None:
        if security.server_name:
            options = [*options, ("grpc.ssl_target_name_override", security.server_name)]
        channel = grpc.secure_channel(target, security.credentials, options=options)
    else:
        channel = grpc.insecure_channel(target, options=options)
    if security.token:
        return grpc.intercept_channel(channel, TokenInterceptor(security.token))
    return channel

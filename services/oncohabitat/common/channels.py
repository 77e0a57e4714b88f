"""Client channel factory: every inter-service call goes through one of these channels.

A channel carries a gRPC service config with:
- a default deadline for every method of the target service (``timeout_s``), so no call can hang forever;
- a retry policy for ``UNAVAILABLE`` only (the server never saw the request, or is restarting);
- round-robin load balancing over several addresses (``"10.0.0.1:50051,10.0.0.2:50051"``) or over every
  address a DNS name resolves to (``dns:///scoring:50051``, e.g. a Kubernetes headless service);
plus keepalive and message-size limits that match the servers'.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence

import grpc

from oncohabitat.common.client_auth import secure_channel
from oncohabitat.common.security import ClientSecurity

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def service_config(service: str, timeout_s: float, max_attempts: int = 4) -> str:
    """The JSON gRPC service config applied to channels for ``service`` (fully-qualified name)."""
    return json.dumps(
        {
            "loadBalancingConfig": [{"round_robin": {}}],
            "methodConfig": [
                {
                    "name": [{"service": service}],
                    "timeout": f"{timeout_s:.3f}s",
                    "waitForReady": False,
                    "retryPolicy": {
                        "maxAttempts": max(2, min(max_attempts, 5)),
                        "initialBackoff": "0.2s",
                        "maxBackoff": "5s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ],
        }
    )


def _split_host_port(address: str) -> tuple[str, str]:
    host, sep, port = address.strip().rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address must be HOST:PORT, got {address!r}")
    return host.strip("[]"), port


def channel_target(addresses: str | Sequence[str]) -> str:
    """gRPC target URI for one or several ``HOST:PORT`` addresses (or a ``dns:///`` URI as is)."""
    items = [a.strip() for a in (addresses.split(",") if isinstance(addresses, str) else addresses) if a.strip()]
    if not items:
        raise ValueError("no address given")
    if len(items) == 1 and "://" in items[0]:
        return items[0]
    parsed = [_split_host_port(item) for item in items]
    hosts = ["127.0.0.1" if host == "localhost" else host for host, _ in parsed]
    try:
        kinds = {ipaddress.ip_address(host).version for host in hosts}
    except ValueError:
        if len(items) == 1:
            return f"dns:///{items[0]}"
        raise ValueError(
            "several addresses must be IP literals; for host names use one DNS name that resolves to all "
            "replicas (dns:///name:port)"
        ) from None
    if len(kinds) != 1:
        raise ValueError("cannot mix IPv4 and IPv6 addresses in one channel")
    scheme = "ipv4" if kinds == {4} else "ipv6"
    joined = ",".join(
        f"{host}:{port}" if scheme == "ipv4" else f"[{host}]:{port}"
        for host, (_, port) in zip(hosts, parsed, strict=True)
    )
    return f"{scheme}:{joined}"


def make_channel(
    addresses: str | Sequence[str],
    service: str,
    *,
    timeout_s: float = 30.0,
    max_attempts: int = 4,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    keepalive_time_s: float = 30.0,
    security: ClientSecurity | None = None,
) -> grpc.Channel:
    """A channel to ``service`` at ``addresses``: deadline, retry, LB, keepalive; TLS and token when configured.

    Args:
        addresses: ``"host:port"``, a comma-separated list, a sequence, or a ``dns:///`` URI.
        service: Fully-qualified gRPC service name, e.g. ``"oncohabitat.v1.Scoring"``.
        timeout_s: Default deadline of every call in seconds (a call may pass a shorter ``timeout``).
        max_attempts: Attempts for UNAVAILABLE (2..5, gRPC's bound).
        max_message_bytes: Send/receive message limit in bytes.
        keepalive_time_s: Interval of HTTP/2 keepalive pings in seconds.
        security: Token and TLS credentials; default: this process' ``ONCOHABITAT_AUTH_*``/``TLS_*`` settings.
    """
    options = [
        ("grpc.enable_retries", 1),
        ("grpc.service_config", service_config(service, timeout_s, max_attempts)),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", int(keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    return secure_channel(channel_target(addresses), options, security or ClientSecurity.from_env())

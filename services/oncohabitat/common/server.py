"""One gRPC server bootstrap for every service.

What every server gets:
- the standard ``grpc.health.v1.Health`` service (overall ``""`` and one entry per served service);
- server reflection only when ``enable_reflection`` is set;
- Prometheus metrics on a separate HTTP port, fed by :class:`~oncohabitat.common.metrics.MetricsInterceptor`;
- domain errors mapped to status codes by :class:`~oncohabitat.common.errors.ErrorMappingInterceptor`;
- bearer-token authentication, role checks and one audit event per call by
  :class:`~oncohabitat.common.auth_interceptor.AuthInterceptor` (health checks open), and TLS (mutual when a CA
  is set) on the gRPC port, both from :class:`~oncohabitat.common.security.SecuritySettings`;
- graceful stop on SIGTERM/SIGINT: health reports NOT_SERVING at once, new RPCs are refused, in-flight RPCs get
  ``grace_period_s`` seconds to finish, then the process exits.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from oncohabitat.common.audit import configure_audit
from oncohabitat.common.auth import TokenStore
from oncohabitat.common.auth_interceptor import AuthInterceptor
from oncohabitat.common.errors import ErrorMappingInterceptor
from oncohabitat.common.metrics import MetricsInterceptor
from oncohabitat.common.security import SecuritySettings, server_credentials
from oncohabitat.common.settings import ServiceSettings

logger = logging.getLogger(__name__)

#: Adds one servicer to a server, e.g. ``lambda s: scoring_pb2_grpc.add_ScoringServicer_to_server(x, s)``.
Registration = Callable[[grpc.Server], None]


@dataclass
class ServiceRuntime:
    """A configured, not yet started gRPC server for one OncoHabitat service.

    Args:
        name: Short service name used in logs (``"scoring"``).
        settings: Deployment settings (ports, grace period, message limits).
        registrations: Callables adding the service's servicers to the server.
        service_names: Fully-qualified gRPC service names served (for health and reflection).
        on_stop: Callables run after the server stopped (close databases, stop threads).
        after_start: Callables run once the server listens (start background workers).
        security: Tokens, TLS and audit settings; default: read from the ``ONCOHABITAT_*`` environment.
    """

    name: str
    settings: ServiceSettings
    registrations: Sequence[Registration]
    service_names: Sequence[str]
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    after_start: list[Callable[[ServiceRuntime], None]] = field(default_factory=list)
    security: SecuritySettings | None = None
    port: int = 0
    metrics_port: int = 0
    _server: grpc.Server | None = None
    _health: health.HealthServicer | None = None
    _metrics_server: Any = None
    _stopped: threading.Event = field(default_factory=threading.Event)
    _stop_lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        """Bind, start serving and report SERVING. Sets :attr:`port` and :attr:`metrics_port`."""
        limits = [
            ("grpc.max_send_message_length", self.settings.max_message_bytes),
            ("grpc.max_receive_message_length", self.settings.max_message_bytes),
            ("grpc.so_reuseport", 0),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ]
        security = self.security or SecuritySettings()
        configure_audit(self.name, security.audit_file)
        tokens = TokenStore(security.auth_tokens_file) if security.auth_tokens_file else None
        if tokens is None:
            logger.warning(
                "%s: authentication is OFF (no ONCOHABITAT_AUTH_TOKENS_FILE): any caller is served", self.name
            )
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.settings.max_workers, thread_name_prefix=self.name),
            interceptors=[MetricsInterceptor(), AuthInterceptor(tokens), ErrorMappingInterceptor()],
            options=limits,
        )
        for register in self.registrations:
            register(server)
        self._health = health.HealthServicer(experimental_non_blocking=True)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        if self.settings.enable_reflection:
            names = (*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME)
            reflection.enable_server_reflection(names, server)
        address = f"{self.settings.host}:{self.settings.port}"
        credentials = server_credentials(security)
        if credentials is None:
            self.port = server.add_insecure_port(address)
        else:
            self.port = server.add_secure_port(address, credentials)
        if self.port == 0:
            raise RuntimeError(f"{self.name}: cannot bind {self.settings.host}:{self.settings.port}")
        self._metrics_server, _ = start_http_server(self.settings.metrics_port, addr=self.settings.metrics_host)
        self.metrics_port = int(self._metrics_server.server_port)
        server.start()
        self._server = server
        for service_name in ("", *self.service_names):
            self._health.set(service_name, health_pb2.HealthCheckResponse.SERVING)
        for hook in self.after_start:
            hook(self)
        logger.info(
            "%s serving",
            self.name,
            extra={
                "grpc_port": self.port,
                "metrics_port": self.metrics_port,
                "host": self.settings.host,
                "tls": credentials is not None,
                "auth": tokens is not None,
            },
        )

    def set_serving(self, serving: bool) -> None:
        """Report readiness for every served service (e.g. NOT_SERVING while a dependency is missing)."""
        if self._health is None:
            return
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for service_name in ("", *self.service_names):
            self._health.set(service_name, status)

    def stop(self, grace_s: float | None = None) -> None:
        """Report NOT_SERVING, refuse new RPCs, let in-flight RPCs finish within the grace period."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            self._stop_once(self.settings.grace_period_s if grace_s is None else grace_s)
            self._stopped.set()

    def _stop_once(self, grace: float) -> None:
        if self._health is not None:
            self._health.enter_graceful_shutdown()
        if self._server is not None:
            self._server.stop(grace).wait()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        for hook in self.on_stop:
            hook()
        logger.info("%s stopped", self.name)

    def serve_forever(self) -> None:
        """Start, then block until SIGTERM/SIGINT; stop gracefully. Main-thread only."""

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            logger.info("%s received %s: stopping", self.name, signal.Signals(signum).name)
            threading.Thread(target=self.stop, name=f"{self.name}-stop", daemon=True).start()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        while not self._stopped.wait(0.5):
            pass

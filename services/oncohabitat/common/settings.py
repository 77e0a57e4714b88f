"""Deployment settings shared by every service (ports, paths, timeouts).

Each service subclasses :class:`ServiceSettings` and sets its own environment prefix, e.g.
``ONCOHABITAT_SCORING_PORT=50055``. Scientific parameters (bin width, ring width, K) never live here:
they belong to versioned model bundles.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path(".oncohabitat")


class ServiceSettings(BaseSettings):
    """Settings every gRPC service understands. Subclasses set ``env_prefix``."""

    model_config = SettingsConfigDict(env_prefix="ONCOHABITAT_", extra="ignore", frozen=True)

    host: str = Field("127.0.0.1", description="Interface the gRPC server binds to.")
    port: int = Field(0, ge=0, le=65535, description="gRPC port; 0 picks a free port (tests).")
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Prometheus /metrics port; 0 picks a free port, -1 is not allowed."
    )
    metrics_host: str = Field("127.0.0.1", description="Interface the metrics endpoint binds to.")
    enable_reflection: bool = Field(False, description="Serve gRPC server reflection (off in production).")
    grace_period_s: float = Field(
        10.0, gt=0, description="On SIGTERM: seconds in-flight RPCs may take to finish before being cancelled."
    )
    max_workers: int = Field(8, ge=1, description="Thread pool size of the gRPC server.")
    max_message_bytes: int = Field(
        64 * 1024 * 1024, ge=4 * 1024 * 1024, description="Max gRPC message size (send and receive), bytes."
    )
    data_dir: Path = Field(DEFAULT_DATA_DIR, description="Root of local state (databases, study store).")
    log_level: str = Field("INFO", description="Python logging level name.")
    log_json: bool = Field(True, description="Emit one JSON object per log line.")

    @property
    def blob_dir(self) -> Path:
        """Directory of the shared content-addressed study store (see :mod:`oncohabitat.common.blobstore`)."""
        return self.data_dir / "blobs"

"""Deployment settings of the regions service (environment prefix ``ONCOHABITAT_REGIONS_``).

Scientific parameters (ring width, K, kinetic phases) are not settings: they arrive with each request's
region profile. ``models_dir`` only locates bundle files a profile references (frozen habitat centroids),
whose SHA-256 the profile carries.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from oncohabitat.bundles.registry import default_bundle_root
from oncohabitat.common.settings import ServiceSettings


class RegionsSettings(ServiceSettings):
    """Settings of the regions service."""

    model_config = SettingsConfigDict(env_prefix="ONCOHABITAT_REGIONS_", extra="ignore", frozen=True)

    port: int = Field(50053, ge=0, le=65535, description="gRPC port.")
    metrics_port: int = Field(9103, ge=0, le=65535, description="Prometheus /metrics port.")
    models_dir: Path = Field(
        default_factory=default_bundle_root,
        description="Root of the model bundles; frozen-centroid files are resolved inside it.",
    )

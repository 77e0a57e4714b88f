"""Deployment settings of the features service (environment prefix ``ONCOHABITAT_FEATURES_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from oncohabitat.common.settings import ServiceSettings


class FeaturesSettings(ServiceSettings):
    """Settings of the features service."""

    model_config = SettingsConfigDict(env_prefix="ONCOHABITAT_FEATURES_", extra="ignore", frozen=True)

    port: int = Field(50054, ge=0, le=65535, description="gRPC port.")
    metrics_port: int = Field(9104, ge=0, le=65535, description="Prometheus /metrics port.")
    workers: int = Field(0, ge=0, le=256, description="pyradiomics worker processes (0 = the CPUs available).")

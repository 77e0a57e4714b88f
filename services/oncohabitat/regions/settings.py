"""Deployment settings of the regions service (environment prefix ``ONCOHABITAT_REGIONS_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from oncohabitat.common.settings import ServiceSettings


class RegionsSettings(ServiceSettings):
    """Settings of the regions service."""

    model_config = SettingsConfigDict(env_prefix="ONCOHABITAT_REGIONS_", extra="ignore", frozen=True)

    port: int = Field(50053, ge=0, le=65535, description="gRPC port.")
    metrics_port: int = Field(9103, ge=0, le=65535, description="Prometheus /metrics port.")

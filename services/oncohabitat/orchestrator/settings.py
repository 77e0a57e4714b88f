"""Deployment settings of the orchestrator service (environment prefix ``ONCOHABITAT_ORCHESTRATOR_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from oncohabitat.common.settings import ServiceSettings


class OrchestratorSettings(ServiceSettings):
    """Settings of the orchestrator service."""

    model_config = SettingsConfigDict(env_prefix="ONCOHABITAT_ORCHESTRATOR_", extra="ignore", frozen=True)

    port: int = Field(50050, ge=0, le=65535, description="gRPC port.")
    metrics_port: int = Field(9100, ge=0, le=65535, description="Prometheus /metrics port.")

"""Deployment settings of the listener service (environment prefix ``ONCOHABITAT_LISTENER_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from oncohabitat.common.settings import ServiceSettings


class ListenerSettings(ServiceSettings):
    """Settings of the listener service."""

    model_config = SettingsConfigDict(env_prefix="ONCOHABITAT_LISTENER_", extra="ignore", frozen=True)

    port: int = Field(50051, ge=0, le=65535, description="gRPC port.")
    metrics_port: int = Field(9101, ge=0, le=65535, description="Prometheus /metrics port.")

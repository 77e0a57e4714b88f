"""Deployment settings of the segmentation service (environment prefix ``ONCOHABITAT_SEGMENTATION_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from oncohabitat.common.settings import ServiceSettings


class SegmentationSettings(ServiceSettings):
    """Settings of the segmentation service."""

    model_config = SettingsConfigDict(env_prefix="ONCOHABITAT_SEGMENTATION_", extra="ignore", frozen=True)

    port: int = Field(50052, ge=0, le=65535, description="gRPC port.")
    metrics_port: int = Field(9102, ge=0, le=65535, description="Prometheus /metrics port.")

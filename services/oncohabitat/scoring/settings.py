"""Deployment settings of the scoring service (environment prefix ``ONCOHABITAT_SCORING_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from oncohabitat.common.settings import ServiceSettings


class ScoringSettings(ServiceSettings):
    """Settings of the scoring service."""

    model_config = SettingsConfigDict(env_prefix="ONCOHABITAT_SCORING_", extra="ignore", frozen=True)

    port: int = Field(50055, ge=0, le=65535, description="gRPC port.")
    metrics_port: int = Field(9105, ge=0, le=65535, description="Prometheus /metrics port.")
    models_dir: Path = Field(Path("models"), description="Root of the model bundles (models/<id>/<version>/).")
    require_lock: bool = Field(
        True,
        description="Refuse to start unless <models_dir>/bundles.lock.json pins every bundle's manifest hash.",
    )

"""Deployment settings of the scoring service (environment prefix ``ONCOHABITAT_SCORING_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from oncohabitat.bundles.registry import default_bundle_root
from oncohabitat.common.settings import ServiceSettings


class ScoringSettings(ServiceSettings):
    """Settings of the scoring service."""

    model_config = SettingsConfigDict(env_prefix="ONCOHABITAT_SCORING_", extra="ignore", frozen=True)

    port: int = Field(50055, ge=0, le=65535, description="gRPC port.")
    metrics_port: int = Field(9105, ge=0, le=65535, description="Prometheus /metrics port.")
    models_dir: Path = Field(
        default_factory=default_bundle_root, description="Bundle root; scoring bundles are scoring/<id>/<version>/."
    )
    require_lock: bool = Field(
        True,
        description="Refuse to start unless <models_dir>/bundles.lock.json exists; refuse bundles it does not pin.",
    )
    reload_interval_s: float = Field(
        10.0, ge=0.0, description="Poll the bundle directory for changes every N seconds (0 = only ReloadModels)."
    )
    signature_public_key: Path | None = Field(
        None, description="PEM Ed25519 public key; when set, every manifest.sig present must verify with it."
    )
    require_signature: bool = Field(False, description="Refuse bundles without a manifest.sig (needs the key).")

"""Deployment settings of the segmentation service (environment prefix ``ONCOHABITAT_SEGMENTATION_``).

Scientific parameters (models, FCM parameters, QC limits) live in ``<models_dir>/segmentation/profiles.json``
beside the versioned segmentation bundles, not here.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from oncohabitat.bundles.registry import default_bundle_root
from oncohabitat.common.settings import ServiceSettings
from oncohabitat.segmentation.profiles import PROFILES_FILE_NAME


class SegmentationSettings(ServiceSettings):
    """Settings of the segmentation service."""

    model_config = SettingsConfigDict(env_prefix="ONCOHABITAT_SEGMENTATION_", extra="ignore", frozen=True)

    port: int = Field(50052, ge=0, le=65535, description="gRPC port.")
    metrics_port: int = Field(9102, ge=0, le=65535, description="Prometheus /metrics port.")
    models_dir: Path = Field(
        default_factory=default_bundle_root,
        description="Bundle root; segmentation bundles are <models_dir>/segmentation/<id>/<version>/.",
    )
    profiles_file: Path | None = Field(
        None, description=f"Profiles JSON; default <models_dir>/segmentation/{PROFILES_FILE_NAME}."
    )
    default_profile: str = Field("", description="Profile used when a request names none; empty = the file's.")
    intra_op_threads: int = Field(1, ge=1, le=64, description="onnxruntime intra-op threads per inference.")
    max_concurrent: int = Field(1, ge=1, le=64, description="Segmentations computed at once (bounds peak memory).")

    @property
    def resolved_profiles_file(self) -> Path:
        """``profiles_file`` or ``<models_dir>/segmentation/profiles.json``."""
        if self.profiles_file is not None:
            return self.profiles_file
        return self.models_dir / "segmentation" / PROFILES_FILE_NAME

"""Segmentation profiles: which model, which reference phase, the seeded-FCM parameters and the QC limits.

Profiles are scientific parameters, so they are versioned beside the bundles in
``<models_dir>/segmentation/profiles.json`` (not in deployment settings)::

    {"format_version": 1, "default": "default",
     "profiles": {"default": {"description": "...", "reference_phase": null,
                              "model": {"id": "phantom-unet3d", "version": "1.0.0"},
                              "fcm": {...}, "qc": {...}}}}

A request names a profile (``SegmentRequest.profile``); empty means the file's (or the settings') default.
Lengths are in mm, volumes in mL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from oncohabitat.bundles.errors import BundleError
from oncohabitat.common.errors import NotFoundError
from oncohabitat.common.provenance import sha256_json

PROFILES_FILE_NAME = "profiles.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelRef(_Strict):
    """A segmentation bundle ``<models_dir>/segmentation/<id>/<version>/``."""

    id: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    version: str = Field(min_length=1, pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$")


class FcmParameters(_Strict):
    """Seeded spatial fuzzy c-means (see :mod:`oncohabitat.segmentation.fcm` and :mod:`.seeded`).

    clusters / fuzziness (m) / p, q: FCM; neighbourhood_mm: side of the box the spatial function averages
    memberships over (per axis at least one voxel, odd); window_mm: side of the cube around the seed that is
    clustered; lesion_clusters: how many of the brightest clusters form the lesion class; opening_mm: radius
    of the in-plane opening that detaches thin bright structures (vessels, ducts); closing_mm: largest radius of the
    3D closing that bridges gaps in an enhancing rim so hole filling recovers a less-enhancing core (at most
    ``closing_fraction`` of the lesion's equivalent-sphere radius, so small lesions are not inflated);
    seed_tolerance_mm: how far
    from the seed the lesion component may start when the seed falls in a non-enhancing core.
    """

    clusters: int = Field(3, ge=2, le=8)
    fuzziness: float = Field(2.0, gt=1.0, le=5.0)
    p: float = Field(1.0, ge=0.0, le=4.0)
    q: float = Field(1.0, ge=0.0, le=4.0)
    neighbourhood_mm: float = Field(3.0, ge=0.0, le=20.0)
    window_mm: float = Field(80.0, gt=5.0, le=400.0)
    lesion_clusters: int = Field(1, ge=1, le=7)
    opening_mm: float = Field(1.0, ge=0.0, le=10.0)
    closing_mm: float = Field(5.0, ge=0.0, le=20.0)
    closing_fraction: float = Field(0.4, gt=0.0, le=2.0)
    seed_tolerance_mm: float = Field(10.0, ge=0.0, le=50.0)
    max_iterations: int = Field(100, ge=1, le=1000)

    @model_validator(mode="after")
    def _lesion_clusters_below_clusters(self) -> FcmParameters:
        if self.lesion_clusters >= self.clusters:
            raise ValueError("lesion_clusters must be smaller than clusters")
        return self


class QcLimits(_Strict):
    """Plausible tumour volume range (mL); outside it the outcome is IMPLAUSIBLE_VOLUME."""

    min_volume_ml: float = Field(0.05, ge=0.0)
    max_volume_ml: float = Field(500.0, gt=0.0)

    @model_validator(mode="after")
    def _ordered(self) -> QcLimits:
        if self.min_volume_ml >= self.max_volume_ml:
            raise ValueError("min_volume_ml must be below max_volume_ml")
        return self


class Profile(_Strict):
    """One segmentation profile. ``reference_phase`` None = first post-contrast (or the single phase)."""

    description: str = ""
    reference_phase: int | None = Field(None, ge=0)
    model: ModelRef | None = None
    fcm: FcmParameters = FcmParameters()
    qc: QcLimits = QcLimits()

    @property
    def sha256(self) -> str:
        """Hash of the profile's canonical JSON (recorded as provenance)."""
        return sha256_json(self.model_dump(mode="json"))


class ProfileSet(_Strict):
    """All profiles of a deployment and the default one."""

    format_version: Literal[1] = 1
    default: str
    profiles: dict[str, Profile]

    @model_validator(mode="after")
    def _default_exists(self) -> ProfileSet:
        if self.default not in self.profiles:
            raise ValueError(f"default profile {self.default!r} is not defined")
        return self

    def get(self, name: str) -> tuple[str, Profile]:
        """(name, profile) of ``name``, or of the default when ``name`` is empty; NotFoundError otherwise."""
        chosen = name or self.default
        profile = self.profiles.get(chosen)
        if profile is None:
            raise NotFoundError("PROFILE_NOT_FOUND", f"segmentation profile {chosen!r} is not deployed", "profile")
        return chosen, profile


def load_profiles(path: Path, default: str = "") -> ProfileSet:
    """Parse and validate ``profiles.json``; ``default`` (if set) replaces the file's default profile.

    Raises:
        BundleError: the file is missing or invalid (the service refuses to start).
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError("PROFILES_MISSING", f"segmentation profiles file {path.name} not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError("PROFILES_INVALID", f"{path.name} is not readable JSON: {type(exc).__name__}") from None
    if isinstance(document, dict) and default:
        document = {**document, "default": default}
    try:
        return ProfileSet.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise BundleError("PROFILES_INVALID", f"{path.name}: {where}: {first['msg']}") from None

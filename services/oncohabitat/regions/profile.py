"""The region profile: every scientific choice of BuildRegions, parsed from ``profile_json``.

Model bundles carry a profile; the request passes it as JSON and its canonical hash goes into provenance.
All models are strict (``extra="forbid"``): a misspelt key is an error, never silently ignored. The defaults
are the seed-001 reading (TNBC habitats paper): S0 = pre-contrast, S1 = first post-contrast, S2 = last
post-contrast phase; 5 mm peritumoral ring restricted to the breast; K = 3 habitats by per-patient k-means on
WIS, WOS, SER and PE (z-scored), ordered by perfusion; MSI on the in-plane 8-neighbourhood. The 20 mm stroma
band of seed 004 is built too (set ``stroma_width_mm`` to null to skip it).

Derived image names (see :mod:`oncohabitat.regions.kinetics` for the exact formulas): ``S0``, ``P<k>``
(post-contrast phase k as is), ``SUB<k>`` (phase k - S0), ``SM0``, ``SL0``, ``S_I``, ``S_L``, ``M1``,
``M2``, ``PE``, ``SER``, ``WIS``, ``WOS``.
"""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from oncohabitat.common.errors import InvalidInputError
from oncohabitat.common.provenance import sha256_json
from oncohabitat.regions import errors

#: Fixed derived image names; ``P<k>`` and ``SUB<k>`` (k >= 1) are accepted as well.
FIXED_DERIVED_NAMES = ("S0", "SM0", "SL0", "S_I", "S_L", "M1", "M2", "PE", "SER", "WIS", "WOS")
_INDEXED_NAME = re.compile(r"^(P|SUB)([1-9][0-9]*)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

MsiNeighbourhood = Literal["2d-4", "2d-8", "3d-6", "3d-18", "3d-26"]


def is_derived_name(name: str) -> bool:
    """Whether ``name`` is a derived image name this service can compute."""
    return name in FIXED_DERIVED_NAMES or _INDEXED_NAME.match(name) is not None


def _check_derived_names(names: list[str]) -> list[str]:
    unknown = [name for name in names if not is_derived_name(name)]
    if unknown:
        raise ValueError(f"unknown derived image(s) {unknown}; known: {', '.join(FIXED_DERIVED_NAMES)}, P<k>, SUB<k>")
    if len(set(names)) != len(names):
        raise ValueError(f"derived image names must be unique, got {names}")
    return names


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KineticSettings(_Strict):
    """Which phases play S0/S1/S2 and how the ratio and slope maps are computed.

    Phase indices follow the Study message: 0 = pre-contrast, 1..N = post-contrast in acquisition order.
    S1 is also SM (M1, M2, SM0) and S2 is also SL (M2, SL0).
    """

    #: Baseline phase (S0).
    s0_phase: int = Field(0, ge=0)
    #: Early / intermediate post-contrast phase (S1 = SM).
    s1_phase: int = Field(1, ge=1)
    #: Late post-contrast phase (S2 = SL); null = the last post-contrast phase of the study.
    s2_phase: int | None = Field(None, ge=1)
    #: Phase of ``S_I`` (seed 004's intermediate subtraction); null = ``s1_phase``.
    intermediate_phase: int | None = Field(None, ge=1)
    #: Denominators at or below ``epsilon`` (signal units) are "degenerate": the ratio takes ``fill_value``.
    epsilon: float = Field(1e-6, gt=0.0)
    #: Value of a ratio map where its denominator is degenerate.
    fill_value: float = 0.0
    #: "positive": a denominator must be > epsilon (ratios of enhancement are only defined for a positive
    #: baseline / enhancement); "nonzero": |denominator| > epsilon (signed ratios allowed).
    denominator: Literal["positive", "nonzero"] = "positive"
    #: PE in percent (x 100, seed 001's usual definition) or as a fraction.
    pe_percent: bool = True
    #: Time unit of the WIS / WOS slopes.
    slope_time_unit: Literal["s", "min"] = "s"
    #: Divide WIS / WOS by S0 (relative slopes, fraction of baseline per time unit) instead of signal units.
    relative_slopes: bool = False

    @model_validator(mode="after")
    def _distinct(self) -> KineticSettings:
        if self.s2_phase is not None and self.s2_phase <= self.s1_phase:
            raise ValueError(f"s2_phase ({self.s2_phase}) must come after s1_phase ({self.s1_phase})")
        if self.s1_phase <= self.s0_phase:
            raise ValueError(f"s1_phase ({self.s1_phase}) must come after s0_phase ({self.s0_phase})")
        return self


class BreastMaskSettings(_Strict):
    """Breast mask: body/air threshold, skin removal, chest wall exclusion, left/right split.

    Computed on a block-averaged copy of the whole pre-contrast phase (``working_spacing_mm``) so that the
    whole volume costs little; see :mod:`oncohabitat.regions.breast`.
    """

    enabled: bool = True
    #: Target voxel size (mm) of the working grid; each axis is block-averaged by round(target / spacing).
    working_spacing_mm: float = Field(2.5, gt=0.0, le=10.0)
    #: SimpleITK histogram threshold separating body from air.
    threshold: Literal["triangle", "otsu", "li", "huang"] = "triangle"
    #: Skin thickness removed from the body surface (mm).
    skin_mm: float = Field(2.0, ge=0.0, le=20.0)
    #: "sternum_plane": exclude everything posterior of a coronal plane through the anterior body surface at
    #: the midline (between the breasts), shifted posteriorly by ``chest_wall_offset_mm``; "none": keep it.
    chest_wall: Literal["sternum_plane", "none"] = "sternum_plane"
    #: Posterior shift (mm) of the chest-wall plane from the midline skin surface.
    chest_wall_offset_mm: float = Field(10.0, ge=-50.0, le=100.0)
    #: Label the right (1) and left (2) breast separately, split at the midline.
    split_left_right: bool = True


class FrozenCentroidsRef(_Strict):
    """A frozen-centroids file of a model bundle and its SHA-256 (verified before every use)."""

    #: POSIX path relative to the service's models directory, e.g. ``"seed001-tnbc/1.0.0/habitats.json"``.
    file: str = Field(min_length=1)
    sha256: str

    @field_validator("file")
    @classmethod
    def _relative(cls, value: str) -> str:
        path = PurePosixPath(value)
        if path.is_absolute() or ".." in path.parts or "\\" in value:
            raise ValueError("must be a relative POSIX path without '..'")
        return value

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not _SHA256.match(value):
            raise ValueError("must be a lowercase hex SHA-256 digest")
        return value


class SupervoxelSettings(_Strict):
    """Two-step habitats: per-patient supervoxels (k-means on scaled features + position), then clustering."""

    #: Supervoxels per tumour (capped at a fifth of the tumour voxels).
    n_segments: int = Field(100, ge=2, le=5000)
    #: Position enters as coordinates (mm) divided by this scale: smaller = more compact supervoxels.
    spatial_scale_mm: float = Field(5.0, gt=0.0)


class HabitatSettings(_Strict):
    """Voxel features, scaling, clustering and size rules of the habitats."""

    enabled: bool = True
    #: Per-voxel features (derived image names), each assumed to increase with perfusion.
    features: list[str] = Field(default_factory=lambda: ["WIS", "WOS", "SER", "PE"], min_length=1)
    #: Feature scaling (fitted per patient, or frozen in the centroids file).
    scaler: Literal["zscore", "minmax", "robust", "none"] = "zscore"
    #: "per_patient": k-means on this tumour; "frozen": nearest population centroid from a bundle file.
    mode: Literal["per_patient", "frozen"] = "per_patient"
    #: Fixed number of habitats (per-patient mode; in frozen mode, checked against the file when set).
    k: int | None = Field(3, ge=2, le=9)
    #: Candidate K range (inclusive) when ``k`` is null; the best by ``criterion`` wins (ties: smaller K).
    k_range: tuple[int, int] | None = None
    criterion: Literal["calinski_harabasz", "silhouette"] = "calinski_harabasz"
    frozen_centroids: FrozenCentroidsRef | None = None
    supervoxels: SupervoxelSettings | None = None
    #: A habitat with fewer voxels, or a smaller volume, is "undersized": its statistics become missing.
    min_voxels: int = Field(10, ge=1)
    min_volume_ml: float = Field(0.0, ge=0.0)
    #: k-means restarts and seed (deterministic output).
    n_init: int = Field(10, ge=1, le=100)
    random_state: int = Field(0, ge=0)

    @field_validator("features")
    @classmethod
    def _features(cls, value: list[str]) -> list[str]:
        return _check_derived_names(value)

    @model_validator(mode="after")
    def _mode(self) -> HabitatSettings:
        if self.k_range is not None:
            low, high = self.k_range
            if not 2 <= low <= high <= 9:
                raise ValueError(f"k_range must satisfy 2 <= low <= high <= 9, got {self.k_range}")
        if self.mode == "per_patient" and self.k is None and self.k_range is None:
            raise ValueError("per_patient mode needs k or k_range")
        if self.mode == "per_patient" and self.k is not None and self.k_range is not None:
            raise ValueError("set either k or k_range, not both")
        if self.mode == "frozen" and self.frozen_centroids is None:
            raise ValueError("frozen mode needs frozen_centroids (file + sha256)")
        return self


class MsiSettings(_Strict):
    """Multiregional spatial interaction matrix of the habitat map (Wu et al., Radiology 2018)."""

    enabled: bool = True
    #: Neighbour pairs counted: in-plane 4/8 or 3D 6/18/26 neighbourhood.
    neighbourhood: MsiNeighbourhood = "2d-8"


class RegionProfile(_Strict):
    """Everything BuildRegions needs besides the images and the tumour mask."""

    kinetics: KineticSettings = Field(default_factory=KineticSettings)
    breast: BreastMaskSettings = Field(default_factory=BreastMaskSettings)
    #: Peritumoral ring width (mm, physical distance from the tumour surface); null = no ring.
    ring_width_mm: float | None = Field(5.0, gt=0.0, le=100.0)
    #: Stroma band width (mm); null = no band.
    stroma_width_mm: float | None = Field(20.0, gt=0.0, le=100.0)
    #: Clip ring and band to the breast mask (of the tumour's side when the mask is split).
    restrict_to_breast: bool = True
    #: Distances in 3D, or in-plane within each slice ("2d").
    mode: Literal["3d", "2d"] = "3d"
    habitats: HabitatSettings = Field(default_factory=HabitatSettings)
    msi: MsiSettings = Field(default_factory=MsiSettings)
    #: Derived images returned on the output grid (float32).
    derived_images: list[str] = Field(default_factory=lambda: ["PE", "SER", "WIS", "WOS"])
    #: Maps whose mean over every region is reported in the statistics.
    statistics_images: list[str] = Field(default_factory=lambda: ["PE", "SER", "WIS", "WOS"])
    #: "breast_s0_mean": divide every phase by the mean pre-contrast signal of the breast parenchyma
    #: (breast mask minus tumour) before anything is derived (seed 004); ratio maps are unchanged by it.
    intensity_normalisation: Literal["none", "breast_s0_mean"] = "none"
    #: "crop": outputs on the tumour bounding box plus the largest margin needed (a sub-grid of the phase
    #: grid: same spacing and direction, origin moved by whole voxels); "full": the whole phase grid.
    output_grid: Literal["crop", "full"] = "crop"

    @field_validator("derived_images", "statistics_images")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        return _check_derived_names(value)

    @model_validator(mode="after")
    def _consistent(self) -> RegionProfile:
        needs_breast = self.intensity_normalisation != "none" or (
            self.restrict_to_breast and (self.ring_width_mm is not None or self.stroma_width_mm is not None)
        )
        if needs_breast and not self.breast.enabled:
            raise ValueError("restrict_to_breast / breast normalisation need breast.enabled = true")
        if self.msi.enabled and not self.habitats.enabled:
            raise ValueError("msi needs habitats.enabled = true")
        return self

    def sha256(self) -> str:
        """SHA-256 of the canonical JSON of the full profile (defaults filled in): the provenance key."""
        return sha256_json(self.model_dump(mode="json"))

    def margin_mm(self) -> float:
        """Largest distance (mm) a region extends beyond the tumour."""
        widths = [w for w in (self.ring_width_mm, self.stroma_width_mm) if w is not None]
        return max(widths, default=0.0)


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '<profile>'}: {error['msg']}" for error in exc.errors()[:5]
    )


def parse_profile(profile_json: str) -> RegionProfile:
    """Parse ``profile_json`` (empty = all defaults).

    Raises:
        InvalidInputError: ``PROFILE_INVALID`` with the first validation problems.
    """
    if not profile_json.strip():
        return RegionProfile()
    try:
        data: Any = json.loads(profile_json)
    except json.JSONDecodeError:
        raise InvalidInputError(errors.PROFILE_INVALID, "profile_json is not valid JSON", "profile_json") from None
    if not isinstance(data, dict):
        raise InvalidInputError(errors.PROFILE_INVALID, "profile_json must be a JSON object", "profile_json")
    try:
        return RegionProfile.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(
            errors.PROFILE_INVALID, f"invalid region profile: {_problems(exc)}", "profile_json"
        ) from exc

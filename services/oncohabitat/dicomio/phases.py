"""DCE phase volumes: validated 3-D volumes of each phase on one common grid.

:func:`validate_phase_geometry` checks headers only (used by the listener at completion);
:func:`assemble_phases` reads the pixels and builds one SimpleITK volume per phase (LPS; modality
rescale slope/intercept applied; numpy view (z, y, x); spacing/origin in SimpleITK's (x, y, z) mm).
Every refusal is a :class:`PhaseAssemblyError` with a stable ``reason``:

* from :class:`~oncohabitat.dicomio.series.SeriesErrorReason`: ``TOO_FEW_SLICES`` (< 4 by default),
  ``INCONSISTENT_SPACING`` (slice gaps differ by more than 5 % of the mean or more than 0.1 mm),
  ``MIXED_ORIENTATION``, ``MIXED_SIZE``, ``MIXED_PIXEL_SPACING``, ``DUPLICATE_POSITION``,
  ``OBLIQUE_STACK``, ``MISSING_GEOMETRY``, ``MISSING_PIXEL_DATA``, ``MULTIFRAME``,
  ``UNSUPPORTED_PIXEL_FORMAT``, ``PIXEL_DECODE_FAILED``, ``UNREADABLE``;
* ``PHASE_GRID_MISMATCH``: phases on different grids while resampling is not allowed;
* ``NOT_ELIGIBLE``: the classification is not an eligible DCE study.

Phases on different grids are resampled (linear) onto the pre-contrast grid only when
``allow_resample`` is set; :attr:`PhaseVolume.resampled` records it. Compressed transfer syntaxes
(JPEG lossless, JPEG-LS, JPEG 2000, RLE) decode through pydicom's pixel handlers (pylibjpeg
plugins).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np
from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from oncohabitat.common.phases import resample_onto
from oncohabitat.dicomio.dce import DceClassification, DceRules, PhaseInfo
from oncohabitat.dicomio.errors import SeriesError
from oncohabitat.dicomio.geometry import Slice, pixel_spacing, plane_geometry
from oncohabitat.dicomio.scan import InstanceInfo
from oncohabitat.dicomio.series import (
    LoadedSeries,
    SeriesLoadOptions,
    assemble_series,
    check_consistent_planes,
    check_slice_spacing,
)

if TYPE_CHECKING:
    # imported by assemble_phases only: the listener runs validate_phase_geometry (headers) and its image
    # does not carry SimpleITK (deploy/README.md)
    import SimpleITK as sitk

logger = logging.getLogger(__name__)


class PhaseErrorReason(StrEnum):
    """Reasons specific to phase assembly (series-level reasons come from ``SeriesErrorReason``)."""

    PHASE_GRID_MISMATCH = "PHASE_GRID_MISMATCH"
    NOT_ELIGIBLE = "NOT_ELIGIBLE"


class PhaseAssemblyError(SeriesError):
    """A phase cannot be assembled, or the phases do not share a grid (see module doc)."""


@dataclass(frozen=True)
class PhaseAssemblyOptions:
    """Acceptance rules: per-phase series rules, grid tolerances (mm, direction cosines), resampling."""

    series: SeriesLoadOptions = field(default_factory=lambda: SeriesLoadOptions(min_slices=4))
    allow_resample: bool = False
    origin_tolerance_mm: float = 0.1
    spacing_tolerance_mm: float = 1e-3
    direction_tolerance: float = 1e-4


@dataclass(frozen=True)
class PhaseVolume:
    """One assembled phase; ``resampled`` when it was resampled onto the pre-contrast grid."""

    info: PhaseInfo
    series: LoadedSeries
    image: sitk.Image
    resampled: bool = False


@dataclass(frozen=True)
class PhaseVolumes:
    """Every phase of a DCE study on the pre-contrast grid (index 0 = pre-contrast)."""

    phases: tuple[PhaseVolume, ...]

    @property
    def resampled_indices(self) -> tuple[int, ...]:
        """Indices of the phases that were resampled."""
        return tuple(p.info.index for p in self.phases if p.resampled)


def _geometry(info: InstanceInfo, index: int) -> Slice:
    if info.image_orientation is None or info.image_position_mm is None or info.pixel_spacing_mm is None:
        raise PhaseAssemblyError("MISSING_GEOMETRY", f"slice #{index} lacks position, orientation or pixel spacing")
    geometry = plane_geometry(info.image_orientation, info.image_position_mm, info.pixel_spacing_mm)
    return geometry, (info.rows, info.columns)


def _phase_grid(phase: PhaseInfo, options: SeriesLoadOptions) -> tuple[Slice, float, int]:
    """First slice geometry, slice spacing (mm) and slice count of a phase, checked from headers."""
    if len(phase.instances) < options.min_slices:
        raise PhaseAssemblyError(
            "TOO_FEW_SLICES", f"phase {phase.index}: {len(phase.instances)} slice(s), at least {options.min_slices}"
        )
    geometries = [_geometry(info, k) for k, info in enumerate(phase.instances)]
    try:
        check_consistent_planes(geometries, options)
        normal = geometries[0][0].normal
        ordered = sorted(geometries, key=lambda g: float(np.dot(g[0].origin, normal)))
        spacing = check_slice_spacing(ordered, options)
    except SeriesError as exc:
        raise PhaseAssemblyError(exc.reason, f"phase {phase.index}: {exc.message}") from exc
    return ordered[0], spacing, len(ordered)


def _grids_match(a: tuple[Slice, float, int], b: tuple[Slice, float, int], opts: PhaseAssemblyOptions) -> bool:
    ((ga, shape_a), sa, na), ((gb, shape_b), sb, nb) = a, b
    orientation_gap = np.subtract(ga.image_orientation_patient, gb.image_orientation_patient)
    return (
        na == nb
        and shape_a == shape_b
        and float(np.max(np.abs(orientation_gap))) <= opts.direction_tolerance
        and float(np.max(np.abs(np.subtract(pixel_spacing(ga), pixel_spacing(gb))))) <= opts.spacing_tolerance_mm
        and abs(sa - sb) <= opts.series.spacing_absolute_tolerance_mm
        and float(np.linalg.norm(np.subtract(ga.origin, gb.origin))) <= opts.origin_tolerance_mm
    )


def assembly_options(rules: DceRules | None) -> PhaseAssemblyOptions:
    """The assembly options the DCE rules imply (their slice minimum and resampling permission)."""
    return PhaseAssemblyOptions(
        series=SeriesLoadOptions(min_slices=rules.min_slices if rules else 4),
        allow_resample=bool(rules and rules.allow_resample),
    )


def validate_phase_geometry(
    phases: Sequence[PhaseInfo], rules: DceRules | None = None, options: PhaseAssemblyOptions | None = None
) -> None:
    """Header-only checks of :func:`assemble_phases` (no pixel data read).

    Raises:
        PhaseAssemblyError: any per-phase geometry reason, or ``PHASE_GRID_MISMATCH`` when the
            phases differ in grid and neither ``rules.allow_resample`` nor ``options.allow_resample``.
    """
    opts = options or assembly_options(rules)
    grids = [_phase_grid(phase, opts.series) for phase in phases]
    if opts.allow_resample:
        return
    for phase, grid in zip(phases[1:], grids[1:], strict=True):
        if not _grids_match(grids[0], grid, opts):
            raise PhaseAssemblyError(
                PhaseErrorReason.PHASE_GRID_MISMATCH, f"phase {phase.index} is not on the pre-contrast grid"
            )


def _same_image_grid(a: sitk.Image, b: sitk.Image, opts: PhaseAssemblyOptions) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and float(np.max(np.abs(np.subtract(a.GetSpacing(), b.GetSpacing())))) <= opts.spacing_tolerance_mm
        and float(np.max(np.abs(np.subtract(a.GetDirection(), b.GetDirection())))) <= opts.direction_tolerance
        and float(np.linalg.norm(np.subtract(a.GetOrigin(), b.GetOrigin()))) <= opts.origin_tolerance_mm
    )


def _load_phase(phase: PhaseInfo, opts: PhaseAssemblyOptions) -> LoadedSeries:
    datasets = []
    for index, path in enumerate(phase.paths):
        try:
            datasets.append(dcmread(path))
        except (InvalidDicomError, OSError) as exc:
            raise PhaseAssemblyError("UNREADABLE", f"phase {phase.index}: file #{index} is not readable DICOM") from exc
    try:
        return assemble_series(datasets, opts.series)
    except SeriesError as exc:
        raise PhaseAssemblyError(exc.reason, f"phase {phase.index}: {exc.message}") from exc


def assemble_phases(classification: DceClassification, options: PhaseAssemblyOptions | None = None) -> PhaseVolumes:
    """Read and validate every phase of an eligible classification; one volume per phase.

    Raises:
        PhaseAssemblyError: ``NOT_ELIGIBLE``, any per-phase reason, or ``PHASE_GRID_MISMATCH``.
    """
    opts = options or PhaseAssemblyOptions()
    if not classification.eligible or not classification.phases:
        raise PhaseAssemblyError(
            PhaseErrorReason.NOT_ELIGIBLE, f"not an eligible DCE study ({classification.reason_code.value})"
        )
    volumes: list[PhaseVolume] = []
    reference: sitk.Image | None = None
    for phase in classification.phases:
        loaded = _load_phase(phase, opts)
        image = loaded.image
        resampled = False
        if reference is None:
            reference = image
        elif not _same_image_grid(reference, image, opts):
            if not opts.allow_resample:
                raise PhaseAssemblyError(
                    PhaseErrorReason.PHASE_GRID_MISMATCH, f"phase {phase.index} is not on the pre-contrast grid"
                )
            image = resample_onto(image, reference)
            resampled = True
            logger.info("phase %d resampled onto the pre-contrast grid", phase.index)
        volumes.append(PhaseVolume(info=phase, series=loaded, image=image, resampled=resampled))
    return PhaseVolumes(tuple(volumes))

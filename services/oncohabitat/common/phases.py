"""The phases of a study: one model for every service (index, role, time, volume on one grid).

Index convention (``Study`` message): 0 = pre-contrast, 1..N = post-contrast in acquisition order; a
single-phase study (e.g. venous CT) has one phase, index 0, role ``single``; ``subtraction`` series (vendor
subtractions) are never a phase. Times are seconds after the pre-contrast phase. Volumes follow
:mod:`oncohabitat.common.volume` (arrays (z, y, x); geometry (x, y, z), mm).

* :func:`select_phases`: decoded phases -> :class:`PhaseSet` (roles, indices, one common grid, finite voxels);
* :class:`LazyPhases` / :class:`StudyPhases` / :func:`choose_reference`: phases decoded on first use and put on
  the reference phase's grid (segmentation);
* :func:`resample_onto`: the one resampling of a phase onto another phase's grid (linear), used here and by
  the DICOM phase assembly (:mod:`oncohabitat.dicomio.phases`).

SimpleITK is imported only where an image is resampled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

import numpy as np
import numpy.typing as npt

from oncohabitat.common.errors import InvalidInputError
from oncohabitat.common.volume import Geometry, Shape, Volume

if TYPE_CHECKING:
    import SimpleITK as sitk

PhaseRole = Literal["pre", "post", "single", "subtraction"]

#: Reasons of :func:`select_phases`.
PHASES_INVALID: Final = "PHASES_INVALID"
GRID_MISMATCH: Final = "GRID_MISMATCH"
PHASE_NOT_FINITE: Final = "PHASE_NOT_FINITE"


@dataclass(frozen=True)
class PhaseInput:
    """One decoded phase: role, index (0 = pre-contrast), time after the pre-contrast phase (s), voxels."""

    role: PhaseRole
    index: int
    time_s: float
    array: npt.NDArray[np.generic]
    geometry: Geometry

    @property
    def volume(self) -> Volume:
        """The phase's voxels and geometry."""
        return Volume(self.array, self.geometry)


@dataclass(frozen=True)
class PhaseSet:
    """Validated phases on one grid (``shape`` (z, y, x) x ``geometry``): arrays and times (s) by phase index."""

    geometry: Geometry
    shape: Shape
    arrays: Mapping[int, npt.NDArray[np.generic]]
    times_s: Mapping[int, float]

    @property
    def indices(self) -> list[int]:
        """Available phase indices, ascending."""
        return sorted(self.arrays)

    @property
    def reference_index(self) -> int:
        """The phase used for whole-volume work (breast mask): the lowest index, i.e. pre-contrast."""
        return self.indices[0]


def _check_finite(phase: PhaseInput) -> None:
    if np.issubdtype(phase.array.dtype, np.floating) and not np.isfinite(phase.array).all():
        raise InvalidInputError(PHASE_NOT_FINITE, f"phase {phase.index} holds NaN or infinite voxels", "study.phases")


def select_phases(phases: Sequence[PhaseInput]) -> PhaseSet:
    """Keep the image phases (subtractions dropped), check indices, roles and the common grid.

    Raises:
        InvalidInputError: ``PHASES_INVALID`` (no phase, duplicated index, role/index disagreement, a single
            phase mixed with others), ``GRID_MISMATCH`` (phases on different grids) or ``PHASE_NOT_FINITE``.
    """
    usable = [phase for phase in phases if phase.role != "subtraction"]
    if not usable:
        raise InvalidInputError(PHASES_INVALID, "the study carries no image phase", "study.phases")
    if any(phase.role == "single" for phase in usable) and len(usable) > 1:
        raise InvalidInputError(PHASES_INVALID, "a single-phase study must carry exactly one phase", "study.phases")
    for phase in usable:
        if phase.role == "pre" and phase.index != 0:
            raise InvalidInputError(
                PHASES_INVALID, f"the pre-contrast phase must have index 0, got {phase.index}", "study.phases"
            )
        if phase.role == "post" and phase.index < 1:
            raise InvalidInputError(PHASES_INVALID, "post-contrast phases must have index 1..N", "study.phases")
        if phase.array.ndim != 3:
            raise InvalidInputError(PHASES_INVALID, f"phase {phase.index} is not a 3D volume", "study.phases")
    indices = [phase.index for phase in usable]
    if len(set(indices)) != len(indices):
        raise InvalidInputError(PHASES_INVALID, f"duplicated phase indices in {sorted(indices)}", "study.phases")
    reference = usable[0].volume
    for phase in usable[1:]:
        if not phase.volume.same_grid(reference):
            raise InvalidInputError(
                GRID_MISMATCH,
                f"phase {phase.index} is not on the grid of phase {usable[0].index} "
                "(shape, spacing, origin and direction must agree)",
                "study.phases",
            )
    for phase in usable:
        _check_finite(phase)
    return PhaseSet(
        geometry=reference.geometry,
        shape=reference.shape,
        arrays={phase.index: phase.array for phase in usable},
        times_s={phase.index: float(phase.time_s) for phase in usable},
    )


def resample_onto(image: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """``image`` resampled (linear, 0 outside, same pixel type) onto ``reference``'s grid."""
    import SimpleITK as sitk

    return sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0, image.GetPixelID())

"""The study's phases as the regions service uses them: one grid, indexed by phase number, timed in seconds.

Roles (Study message): ``pre`` = pre-contrast (index 0), ``post`` = post-contrast (index 1..N), ``single``
= a single-phase study (e.g. venous CT, index 0), ``subtraction`` = vendor subtraction series (ignored).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from oncohabitat.common.codec import Geometry
from oncohabitat.common.errors import InvalidInputError
from oncohabitat.regions import errors
from oncohabitat.regions.grid import Grid

PhaseRole = Literal["pre", "post", "single", "subtraction"]


@dataclass(frozen=True)
class PhaseInput:
    """One decoded phase: role, index (0 = pre-contrast), time after the pre-contrast phase (s), voxels."""

    role: PhaseRole
    index: int
    time_s: float
    array: npt.NDArray[np.generic]
    geometry: Geometry


@dataclass(frozen=True)
class PhaseSet:
    """Validated phases on one grid: arrays (z, y, x) and acquisition times (s) keyed by phase index."""

    grid: Grid
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


def _phase_grid(phase: PhaseInput) -> Grid:
    shape = phase.array.shape
    return Grid((int(shape[0]), int(shape[1]), int(shape[2])), phase.geometry)


def _check_finite(phase: PhaseInput) -> None:
    if np.issubdtype(phase.array.dtype, np.floating) and not np.isfinite(phase.array).all():
        raise InvalidInputError(
            errors.PHASE_NOT_FINITE, f"phase {phase.index} holds NaN or infinite voxels", "study.phases"
        )


def select_phases(phases: Sequence[PhaseInput]) -> PhaseSet:
    """Keep the image phases (subtractions dropped), check indices, roles and the common grid.

    Raises:
        InvalidInputError: ``PHASES_INVALID`` (no phase, duplicated index, role/index disagreement, a single
            phase mixed with others), ``GRID_MISMATCH`` (phases on different grids) or ``PHASE_NOT_FINITE``.
    """
    usable = [phase for phase in phases if phase.role != "subtraction"]
    if not usable:
        raise InvalidInputError(errors.PHASES_INVALID, "the study carries no image phase", "study.phases")
    if any(phase.role == "single" for phase in usable) and len(usable) > 1:
        raise InvalidInputError(
            errors.PHASES_INVALID, "a single-phase study must carry exactly one phase", "study.phases"
        )
    for phase in usable:
        if phase.role == "pre" and phase.index != 0:
            raise InvalidInputError(
                errors.PHASES_INVALID, f"the pre-contrast phase must have index 0, got {phase.index}", "study.phases"
            )
        if phase.role == "post" and phase.index < 1:
            raise InvalidInputError(errors.PHASES_INVALID, "post-contrast phases must have index 1..N", "study.phases")
        if phase.array.ndim != 3:
            raise InvalidInputError(errors.PHASES_INVALID, f"phase {phase.index} is not a 3D volume", "study.phases")
    indices = [phase.index for phase in usable]
    if len(set(indices)) != len(indices):
        raise InvalidInputError(errors.PHASES_INVALID, f"duplicated phase indices in {sorted(indices)}", "study.phases")
    reference = _phase_grid(usable[0])
    for phase in usable[1:]:
        if not _phase_grid(phase).matches(reference):
            raise InvalidInputError(
                errors.GRID_MISMATCH,
                f"phase {phase.index} is not on the grid of phase {usable[0].index} "
                "(shape, spacing, origin and direction must agree)",
                "study.phases",
            )
    for phase in usable:
        _check_finite(phase)
    return PhaseSet(
        grid=reference,
        arrays={phase.index: phase.array for phase in usable},
        times_s={phase.index: float(phase.time_s) for phase in usable},
    )

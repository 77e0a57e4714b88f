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

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

import numpy as np
import numpy.typing as npt

from oncohabitat.common.errors import InvalidInputError
from oncohabitat.common.volume import Geometry, Shape, Volume
from oncohabitat.v1 import common_pb2

if TYPE_CHECKING:
    import SimpleITK as sitk

logger = logging.getLogger(__name__)

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


#: Proto phase roles (``common_pb2.PhaseRole``) -> :data:`PhaseRole`; an unset role has none.
_PROTO_ROLES: Final[dict[int, PhaseRole]] = {
    common_pb2.PHASE_ROLE_PRE_CONTRAST: "pre",
    common_pb2.PHASE_ROLE_POST_CONTRAST: "post",
    common_pb2.PHASE_ROLE_SINGLE: "single",
    common_pb2.PHASE_ROLE_SUBTRACTION: "subtraction",
}


def phase_role(phase: common_pb2.Phase) -> PhaseRole:
    """The role of a ``Phase`` message.

    Raises:
        InvalidInputError: ``PHASES_INVALID`` for a phase without a role.
    """
    role = _PROTO_ROLES.get(phase.role)
    if role is None:
        raise InvalidInputError(
            PHASES_INVALID, "every phase needs a role (pre, post, single or subtraction)", "study.phases"
        )
    return role


def check_layout(layout: Sequence[tuple[PhaseRole, int]]) -> None:
    """Check the image phases' ``(role, index)`` pairs (subtractions already dropped) against the convention.

    Raises:
        InvalidInputError: ``PHASES_INVALID``: no phase, a single phase mixed with others, a pre-contrast
            phase not at index 0, a post-contrast phase below index 1, or a duplicated index.
    """
    if not layout:
        raise InvalidInputError(PHASES_INVALID, "the study carries no image phase", "study.phases")
    if any(role == "single" for role, _ in layout) and len(layout) > 1:
        raise InvalidInputError(PHASES_INVALID, "a single-phase study must carry exactly one phase", "study.phases")
    for role, index in layout:
        if role == "pre" and index != 0:
            raise InvalidInputError(
                PHASES_INVALID, f"the pre-contrast phase must have index 0, got {index}", "study.phases"
            )
        if role == "post" and index < 1:
            raise InvalidInputError(PHASES_INVALID, "post-contrast phases must have index 1..N", "study.phases")
    indices = [index for _, index in layout]
    if len(set(indices)) != len(indices):
        raise InvalidInputError(PHASES_INVALID, f"duplicated phase indices in {sorted(indices)}", "study.phases")


def select_phases(phases: Sequence[PhaseInput]) -> PhaseSet:
    """Keep the image phases (subtractions dropped), check indices, roles and the common grid.

    Raises:
        InvalidInputError: ``PHASES_INVALID`` (see :func:`check_layout`; or a phase that is not 3-D),
            ``GRID_MISMATCH`` (phases on different grids) or ``PHASE_NOT_FINITE``.
    """
    usable = [phase for phase in phases if phase.role != "subtraction"]
    check_layout([(phase.role, phase.index) for phase in usable])
    for phase in usable:
        if phase.array.ndim != 3:
            raise InvalidInputError(PHASES_INVALID, f"phase {phase.index} is not a 3D volume", "study.phases")
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


class LazyPhases(Mapping[int, "sitk.Image"]):
    """Mapping index -> image on the reference phase's grid; each phase is loaded once, on first access.

    A phase whose grid differs from the reference's (``same_grid`` false) is :func:`resample_onto` it;
    otherwise it takes the reference's geometry exactly (``CopyInformation``), so one mask fits every phase.
    """

    def __init__(
        self,
        indices: list[int],
        reference_index: int,
        load: Callable[[int], sitk.Image],
        same_grid: Callable[[sitk.Image, sitk.Image], bool],
    ) -> None:
        if reference_index not in indices:
            raise ValueError("the reference index must be one of the phases")
        self._indices = sorted(indices)
        self._reference_index = reference_index
        self._load = load
        self._same_grid = same_grid
        self._cache: dict[int, sitk.Image] = {}

    def __getitem__(self, index: int) -> sitk.Image:
        if index not in self._indices:
            raise KeyError(index)
        if index not in self._cache:
            image = self._load(index)
            if index != self._reference_index:
                reference = self[self._reference_index]
                if not self._same_grid(image, reference):
                    logger.info("phase %d resampled onto the reference grid", index)
                    image = resample_onto(image, reference)
                else:
                    image.CopyInformation(reference)
            self._cache[index] = image
        return self._cache[index]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices)

    def __len__(self) -> int:
        return len(self._indices)


@dataclass(frozen=True)
class StudyPhases:
    """Phases of one study as images, the reference phase and the pre-contrast phase (None for single-image
    studies); the images are on the reference phase's grid (:class:`LazyPhases`)."""

    images: Mapping[int, sitk.Image]
    reference_index: int
    pre_index: int | None

    @property
    def reference(self) -> sitk.Image:
        """The reference phase (masks live on its grid)."""
        return self.images[self.reference_index]

    @property
    def pre(self) -> sitk.Image | None:
        """The pre-contrast phase, if the study has one."""
        return None if self.pre_index is None else self.images[self.pre_index]


def choose_reference(indices: list[int], single: bool, requested: int | None) -> int:
    """The requested phase, else the single phase, else the first post-contrast phase (lowest index >= 1).

    Raises:
        InvalidInputError: ``REFERENCE_PHASE_MISSING`` when the requested (or any post-contrast) phase is absent.
    """
    if requested is not None and not single:
        if requested not in indices:
            raise InvalidInputError(
                "REFERENCE_PHASE_MISSING",
                f"the profile's reference phase {requested} is not in the study (phases {sorted(indices)})",
                "study.phases",
            )
        return requested
    if single:
        return indices[0]
    posts = [i for i in indices if i >= 1]
    if not posts:
        raise InvalidInputError(
            "REFERENCE_PHASE_MISSING", "the study has no single or post-contrast phase", "study.phases"
        )
    return min(posts)

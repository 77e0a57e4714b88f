"""The phases of a study as the segmentation methods see them: indexed images on one reference grid.

Index convention (as in ``Study``): 0 = pre-contrast, 1..N = post-contrast in acquisition order; a
single-phase study (e.g. one post-contrast-like image, or CT) has one phase and no pre-contrast. Phases are
decoded lazily (a Duke-sized phase is ~90 MB) and resampled (linear) onto the reference phase's grid when
their grid differs, so one mask applies to every phase.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import SimpleITK as sitk

from oncohabitat.common.errors import InvalidInputError
from oncohabitat.segmentation.supplied import same_grid

logger = logging.getLogger(__name__)


class LazyPhases(Mapping[int, sitk.Image]):
    """Mapping index -> image on the reference grid; each phase is loaded once, on first access."""

    def __init__(self, indices: list[int], reference_index: int, load: Callable[[int], sitk.Image]) -> None:
        if reference_index not in indices:
            raise ValueError("the reference index must be one of the phases")
        self._indices = sorted(indices)
        self._reference_index = reference_index
        self._load = load
        self._cache: dict[int, sitk.Image] = {}

    def __getitem__(self, index: int) -> sitk.Image:
        if index not in self._indices:
            raise KeyError(index)
        if index not in self._cache:
            image = self._load(index)
            if index != self._reference_index:
                reference = self[self._reference_index]
                if not same_grid(image, reference):
                    logger.info("phase %d resampled onto the reference grid", index)
                    image = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0, image.GetPixelID())
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
    """Phases of one study, the reference phase and the pre-contrast phase (None for single-image studies)."""

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

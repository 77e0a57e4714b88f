"""A labelled DCE-MRI cohort on disk: NIfTI images per case and phase, one tumour mask per case.

Default layout (MAMA-MIA)::

    <root>/images/<CASE>/<case>_0000.nii.gz     phase 0 = pre-contrast
    <root>/images/<CASE>/<case>_0001.nii.gz     phase 1 = first post-contrast, ...
    <root>/segmentations/expert/<case>.nii.gz   tumour mask (non-zero = tumour)

Other layouts (e.g. BreastDCEDL) are described by two patterns: ``mask_glob`` finds the masks (the case id is
the file name without ``.nii.gz`` / ``.nii`` / ``.nrrd``) and ``image_pattern`` builds each phase's path from
``{case}``, ``{CASE}`` (upper case) and ``{phase}`` (e.g. ``{phase:04d}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MAMA_MIA_MASK_GLOB = "segmentations/expert/*.nii.gz"
MAMA_MIA_IMAGE_PATTERN = "images/{CASE}/{case}_{phase:04d}.nii.gz"
_SUFFIXES = (".nii.gz", ".nii", ".nrrd")


class CohortError(ValueError):
    """The cohort directory does not hold what the layout promises."""


@dataclass(frozen=True)
class CohortCase:
    """One case: id, phase index -> image path, mask path."""

    case_id: str
    phases: dict[int, Path]
    mask: Path


def _case_id(path: Path) -> str:
    for suffix in _SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.stem


def discover_cohort(
    root: Path,
    phases: tuple[int, ...] = (0, 1),
    mask_glob: str = MAMA_MIA_MASK_GLOB,
    image_pattern: str = MAMA_MIA_IMAGE_PATTERN,
) -> list[CohortCase]:
    """Every case under ``root`` with a mask and all ``phases``, sorted by case id.

    Raises:
        CohortError: no mask matches ``mask_glob``, or a case lacks one of the phases.
    """
    masks = sorted(root.glob(mask_glob))
    if not masks:
        raise CohortError(f"no mask matches {mask_glob!r} under {root}")
    cases = []
    for mask in masks:
        case_id = _case_id(mask)
        paths = {
            phase: root / image_pattern.format(case=case_id, CASE=case_id.upper(), phase=phase) for phase in phases
        }
        missing = [phase for phase, path in paths.items() if not path.is_file()]
        if missing:
            raise CohortError(f"case {case_id}: phase(s) {missing} not found (pattern {image_pattern!r})")
        cases.append(CohortCase(case_id=case_id, phases=paths, mask=mask))
    return cases

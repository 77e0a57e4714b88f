"""Turn a submitted study (instance files in the shared DICOM store) into volumes and a supplied mask.

Two kinds of study:
- **MR** (no CT image series): a dynamic contrast-enhanced breast study. The dynamic series and its phase order
  come from :func:`oncohabitat.dicomio.dce.classify_dce`, every phase is assembled on one grid
  (:func:`oncohabitat.dicomio.phases.assemble_phases`); the reference phase (first post-contrast) carries the
  supplied mask, if any. A study that is not an eligible DCE study is a review reason with the classifier's code.
- **Single-phase** (e.g. venous CT): when the study carries an RTSTRUCT or SEG, the image series it references;
  otherwise the only image series.
Several candidate series without a mask, a series that does not assemble, or a mask whose ROI cannot be chosen
uniquely are reported as review reasons, never guessed.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from oncohabitat.common.errors import InvalidInputError
from oncohabitat.dicomio import (
    InstanceInfo,
    InstanceKind,
    LoadedSeries,
    MaskError,
    MaskSelectionError,
    RasterisedMask,
    RoiSelection,
    SeriesError,
    group_by_series,
    load_mask,
    load_series,
    scan_instances,
)
from oncohabitat.dicomio.dce import DceClassification, DceRules, classify_dce
from oncohabitat.dicomio.dce import PhaseRole as DcePhaseRole
from oncohabitat.dicomio.dce_handoff import HandoffMismatchError, classification_from_handoff
from oncohabitat.dicomio.phases import PhaseAssemblyError, assemble_phases, assembly_options

logger = logging.getLogger(__name__)

#: The phase masks are drawn on and segmentation runs on: the first post-contrast phase (seed 001).
REFERENCE_PHASE_INDEX = 1


class ReviewNeeded(Exception):  # noqa: N818 - an outcome, not an error
    """The study cannot be processed automatically; ``reason`` is curated and free of patient data."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Handoff:
    """The listener's DCE classification JSON (:mod:`oncohabitat.dicomio.dce_handoff`) and the store root its
    instance paths are relative to."""

    summary: Mapping[str, Any]
    store_root: Path


@dataclass(frozen=True)
class LoadedPhase:
    """One DCE phase: index (0 = pre-contrast), times (s), volume, and whether it was resampled.

    ``time_from_pre_s``: after the pre-contrast acquisition; ``time_after_injection_s``: after the
    contrast injection (see :mod:`oncohabitat.dicomio.dce`; None where unknown); ``resampled``: put onto the
    pre-contrast grid (only where the DCE rules allow it).
    """

    index: int
    pre_contrast: bool
    time_from_pre_s: float
    image: sitk.Image
    time_after_injection_s: float | None = None
    resampled: bool = False


@dataclass(frozen=True)
class LoadedStudy:
    """The reference image series, its supplied mask (if any), the files it came from, and DCE phases."""

    series: LoadedSeries
    series_paths: tuple[Path, ...]
    mask: RasterisedMask | None
    mask_kind: str
    phases: tuple[LoadedPhase, ...] = ()


def resolve_instance_paths(store_root: Path, relative_paths: Sequence[str]) -> list[Path]:
    """Absolute paths inside ``store_root``; anything escaping the root is refused."""
    root = store_root.resolve()
    resolved = []
    for relative in relative_paths:
        path = (root / relative).resolve()
        if not path.is_relative_to(root):
            raise InvalidInputError("INSTANCE_PATH_INVALID", "instance path escapes the DICOM store", "instance_paths")
        resolved.append(path)
    return resolved


def series_key(series_uid: str) -> str:
    """Opaque key of a series (same scheme as the listener's)."""
    return hashlib.sha256(series_uid.encode()).hexdigest()[:32]


def _choose_series(images: dict[str, list[InstanceInfo]], masks: list[InstanceInfo]) -> tuple[str, list[InstanceInfo]]:
    referenced = [uid for m in masks for uid in m.referenced_series_uids if uid in images]
    if referenced:
        return referenced[0], [m for m in masks if referenced[0] in m.referenced_series_uids]
    if masks:
        raise ReviewNeeded("MASK_REFERENCES_UNKNOWN_SERIES: the supplied mask references no received image series")
    if len(images) == 1:
        uid = next(iter(images))
        return uid, []
    if not images:
        raise ReviewNeeded("NO_IMAGE_SERIES: the study holds no image series")
    raise ReviewNeeded(f"AMBIGUOUS_SERIES: {len(images)} image series and no mask saying which one to use")


def _rasterise(
    candidate_masks: list[InstanceInfo], series: LoadedSeries, selection: RoiSelection
) -> tuple[RasterisedMask | None, str]:
    if not candidate_masks:
        return None, ""
    if len(candidate_masks) > 1:
        raise ReviewNeeded(f"AMBIGUOUS_MASK: {len(candidate_masks)} RTSTRUCT/SEG objects reference the series")
    mask_info = candidate_masks[0]
    try:
        mask = load_mask(mask_info.path, series, selection)
    except MaskSelectionError as exc:
        names = ", ".join(exc.roi_names) or "none"
        raise ReviewNeeded(f"{exc.reason}: cannot choose the tumour ROI (candidates: {names})") from None
    except MaskError as exc:
        raise ReviewNeeded(f"MASK_REFUSED: {exc.reason}") from None
    return mask, "rtstruct" if mask_info.kind == InstanceKind.RTSTRUCT else "seg"


def _classification(infos: list[InstanceInfo], rules: DceRules | None, handoff: Handoff | None) -> DceClassification:
    """The listener's classification when it came with the hand-off (the study is classified once), else ours."""
    if handoff is not None:
        try:
            return classification_from_handoff(handoff.summary, infos, handoff.store_root)
        except HandoffMismatchError:
            logger.warning("the hand-off's DCE classification does not fit the study's files; classifying again")
    return classify_dce(infos, rules)


def _load_dce(
    infos: list[InstanceInfo],
    masks: list[InstanceInfo],
    selection: RoiSelection,
    rules: DceRules | None,
    handoff: Handoff | None = None,
) -> LoadedStudy:
    classification = _classification(infos, rules, handoff)
    if not classification.eligible:
        raise ReviewNeeded(f"NOT_DCE_STUDY: {classification.reason_code.value}: {classification.reason}")
    try:
        volumes = assemble_phases(classification, assembly_options(rules))
    except PhaseAssemblyError as exc:
        raise ReviewNeeded(f"PHASES_REFUSED: {exc.reason}") from None
    reference = volumes.phases[REFERENCE_PHASE_INDEX]
    phase_series = {p.info.series_uid for p in volumes.phases}
    candidate_masks = [m for m in masks if phase_series & set(m.referenced_series_uids)]
    if masks and not candidate_masks:
        raise ReviewNeeded("MASK_REFERENCES_UNKNOWN_SERIES: the supplied mask references no dynamic phase")
    mask, kind = _rasterise(candidate_masks, reference.series, selection)
    phases = tuple(
        LoadedPhase(
            p.info.index,
            p.info.role == DcePhaseRole.PRE_CONTRAST,
            p.info.time_from_pre_s,
            p.image,
            p.info.time_after_injection_s,
            p.resampled,
        )
        for p in volumes.phases
    )
    return LoadedStudy(reference.series, tuple(reference.info.paths), mask, kind, phases)


def load_study(
    paths: Sequence[Path],
    selection: RoiSelection,
    dce_rules: DceRules | None = None,
    handoff: Handoff | None = None,
) -> LoadedStudy:
    """Scan, choose and assemble the image series (or DCE phases) and rasterise the supplied mask.

    ``dce_rules``: the deployment's DCE rules (the listener's ``DCE_RULES_FILE``; None = defaults),
    used to classify the phases and to assemble them (slice minimum, resampling permission).
    ``handoff``: the listener's DCE classification, used instead of classifying the study again.

    Raises:
        ReviewNeeded: the study cannot be processed without a person (reason code first).
    """
    infos = scan_instances(paths)
    groups = group_by_series(infos)
    images = {uid: group for uid, group in groups.items() if group[0].kind == InstanceKind.IMAGE}
    masks = [info for info in infos if info.kind in (InstanceKind.RTSTRUCT, InstanceKind.SEG)]
    modalities = {group[0].modality for group in images.values()}
    if "MR" in modalities and "CT" not in modalities:
        return _load_dce(infos, masks, selection, dce_rules, handoff)
    uid, candidate_masks = _choose_series(images, masks)
    series_paths = tuple(sorted(info.path for info in images[uid]))
    try:
        series = load_series(series_paths)
    except SeriesError as exc:
        raise ReviewNeeded(f"SERIES_REFUSED: {exc.reason}") from None
    mask, kind = _rasterise(candidate_masks, series, selection)
    return LoadedStudy(series, series_paths, mask, kind)

"""Orchestrator study loading on the real STS CT: series choice, ROI selection rule, review reasons."""

from __future__ import annotations

import copy
from pathlib import Path

import pydicom
import pytest

from oncohabitat.common.errors import InvalidInputError
from oncohabitat.dicomio import RoiSelection
from oncohabitat.orchestrator.study_loading import ReviewNeeded, load_study, resolve_instance_paths


def _images(sts_ct_dir: Path) -> list[Path]:
    return sorted((sts_ct_dir / "image").glob("*.dcm"))


def _rtstruct_with_rois(sts_ct_dir: Path, out: Path, names: list[str]) -> Path:
    """The real RTSTRUCT with its single GTV contour set copied under each of ``names``."""
    ds = pydicom.dcmread(sts_ct_dir / "mask" / "RS.dcm")
    roi, contour, observation = (
        ds.StructureSetROISequence[0],
        ds.ROIContourSequence[0],
        ds.RTROIObservationsSequence[0],
    )
    ds.StructureSetROISequence, ds.ROIContourSequence, ds.RTROIObservationsSequence = [], [], []
    for number, name in enumerate(names, start=1):
        new_roi, new_contour, new_observation = copy.deepcopy(roi), copy.deepcopy(contour), copy.deepcopy(observation)
        new_roi.ROINumber, new_roi.ROIName = number, name
        new_contour.ReferencedROINumber = number
        new_observation.ObservationNumber, new_observation.ReferencedROINumber = number, number
        ds.StructureSetROISequence.append(new_roi)
        ds.ROIContourSequence.append(new_contour)
        ds.RTROIObservationsSequence.append(new_observation)
    path = out / "RS-edited.dcm"
    ds.save_as(path)
    return path


def test_supplied_rtstruct_selects_the_referenced_series(sts_ct_dir: Path) -> None:
    study = load_study([*_images(sts_ct_dir), sts_ct_dir / "mask" / "RS.dcm"], RoiSelection())
    assert study.mask is not None and study.mask_kind == "rtstruct"
    assert study.mask.roi_name == "GTV_Mass_CT"
    assert study.mask.image.GetSize() == study.series.image.GetSize()
    assert len(study.series_paths) == 59


def test_two_tumour_rois_need_review_with_their_names(sts_ct_dir: Path, tmp_path: Path) -> None:
    rtstruct = _rtstruct_with_rois(sts_ct_dir, tmp_path, ["GTV_primary", "GTV_node"])
    with pytest.raises(ReviewNeeded) as review:
        load_study([*_images(sts_ct_dir), rtstruct], RoiSelection())
    assert review.value.reason.startswith("AMBIGUOUS_ROI")
    assert "GTV_primary" in review.value.reason and "GTV_node" in review.value.reason


def test_configured_roi_name_resolves_the_ambiguity(sts_ct_dir: Path, tmp_path: Path) -> None:
    rtstruct = _rtstruct_with_rois(sts_ct_dir, tmp_path, ["GTV_primary", "GTV_node"])
    study = load_study([*_images(sts_ct_dir), rtstruct], RoiSelection(name="GTV_node"))
    assert study.mask is not None and study.mask.roi_name == "GTV_node"


def test_no_tumour_like_roi_among_several_needs_review(sts_ct_dir: Path, tmp_path: Path) -> None:
    rtstruct = _rtstruct_with_rois(sts_ct_dir, tmp_path, ["Body", "Couch"])
    with pytest.raises(ReviewNeeded) as review:
        load_study([*_images(sts_ct_dir), rtstruct], RoiSelection())
    assert review.value.reason.startswith("NO_ROI")


def test_image_only_study_has_no_mask(sts_ct_dir: Path) -> None:
    study = load_study(_images(sts_ct_dir), RoiSelection())
    assert study.mask is None


def test_too_few_slices_is_a_review_reason(sts_ct_dir: Path) -> None:
    with pytest.raises(ReviewNeeded) as review:
        load_study(_images(sts_ct_dir)[:1], RoiSelection())
    assert review.value.reason == "SERIES_REFUSED: TOO_FEW_SLICES"


def test_instance_paths_cannot_escape_the_store(tmp_path: Path) -> None:
    assert resolve_instance_paths(tmp_path, ["a/b.dcm"]) == [(tmp_path / "a" / "b.dcm").resolve()]
    with pytest.raises(InvalidInputError):
        resolve_instance_paths(tmp_path, ["../outside.dcm"])

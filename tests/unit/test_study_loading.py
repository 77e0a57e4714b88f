"""Orchestrator study loading on the real STS CT: series choice, ROI selection rule, review reasons."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest

from oncohabitat.common.errors import InvalidInputError
from oncohabitat.dicomio import RoiSelection
from oncohabitat.dicomio.dce import DceRules
from oncohabitat.launcher import platform_environment
from oncohabitat.orchestrator.study_loading import ReviewNeeded, load_study, resolve_instance_paths
from oncohabitat.phantom import PhantomStudy, generate_study


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


# --- DCE studies: the deployment's rules reach phase classification and assembly -------------------------------------


@pytest.fixture(scope="module")
def dce_phantom(tmp_path_factory: pytest.TempPathFactory) -> PhantomStudy:
    return generate_study(tmp_path_factory.mktemp("dce"), size="small", seed=11, layout="per-phase")


def _copy(phantom: PhantomStudy, dest: Path, change: Callable[[int, pydicom.Dataset], None]) -> list[Path]:
    """The phantom's files rewritten to ``dest`` after ``change(phase, ds)``."""
    paths = []
    for p, files in enumerate(phantom.phase_files):
        for path in files:
            ds = pydicom.dcmread(path)
            change(p, ds)
            target = dest / f"p{p}" / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(target)
            paths.append(target)
    return paths


def test_dce_phases_carry_both_times(dce_phantom: PhantomStudy) -> None:
    study = load_study(sorted(dce_phantom.dicom_dir.rglob("*.dcm")), RoiSelection())
    assert [round(p.time_from_pre_s) for p in study.phases] == [round(t) for t in dce_phantom.phase_times_s]
    # ContrastBolusStartTime lies injection_time_s after the pre-contrast acquisition
    expected = [t - dce_phantom.injection_time_s for t in dce_phantom.phase_times_s]
    assert [p.time_after_injection_s for p in study.phases] == pytest.approx(expected)
    assert study.phases[0].time_after_injection_s < 0 < study.phases[1].time_after_injection_s
    assert not any(p.resampled for p in study.phases)


def test_phases_off_grid_are_resampled_only_when_the_rules_allow_it_and_that_is_recorded(
    dce_phantom: PhantomStudy, tmp_path: Path
) -> None:
    def shift(p: int, ds: pydicom.Dataset) -> None:
        if p == 2:
            ds.ImagePositionPatient = [ds.ImagePositionPatient[0] + 1.5, *ds.ImagePositionPatient[1:]]

    paths = _copy(dce_phantom, tmp_path, shift)
    with pytest.raises(ReviewNeeded, match="PHASE_GRID_MISMATCH"):
        load_study(paths, RoiSelection())
    study = load_study(paths, RoiSelection(), DceRules(allow_resample=True))
    assert [p.resampled for p in study.phases] == [p.index == 2 for p in study.phases]
    assert study.phases[2].image.GetOrigin() == pytest.approx(study.phases[0].image.GetOrigin())


def test_the_breast_rule_of_the_deployment_applies(dce_phantom: PhantomStudy, tmp_path: Path) -> None:
    def pelvis(_p: int, ds: pydicom.Dataset) -> None:
        ds.BodyPartExamined = "PELVIS"
        ds.SeriesDescription = ds.SeriesDescription.replace("BREAST", "PELVIS").replace("breast", "pelvis")
        ds.ProtocolName = "pelvis dce"

    paths = _copy(dce_phantom, tmp_path, pelvis)
    with pytest.raises(ReviewNeeded, match="NOT_DCE_STUDY: NOT_BREAST"):
        load_study(paths, RoiSelection())
    assert len(load_study(paths, RoiSelection(), DceRules(require_breast=False)).phases) == 6


def test_up_gives_the_orchestrator_the_listeners_dce_rules(tmp_path: Path) -> None:
    rules = str(tmp_path / "rules.json")
    env = platform_environment(tmp_path, "127.0.0.1", {"ONCOHABITAT_LISTENER_DCE_RULES_FILE": rules})
    assert env["ONCOHABITAT_ORCHESTRATOR_DCE_RULES_FILE"] == rules
    apart = platform_environment(
        tmp_path,
        "127.0.0.1",
        {"ONCOHABITAT_LISTENER_DCE_RULES_FILE": rules, "ONCOHABITAT_ORCHESTRATOR_DCE_RULES_FILE": "other.json"},
    )
    assert apart["ONCOHABITAT_ORCHESTRATOR_DCE_RULES_FILE"] == "other.json"

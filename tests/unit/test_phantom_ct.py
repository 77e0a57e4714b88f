"""Unit tests of the CT phantom: HU encoding, RTSTRUCT and SEG referencing the CT series, determinism."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from rt_utils import RTStructBuilder

from oncohabitat.phantom import PhantomCtStudy, PhantomError, Tissue, generate_ct_study

SEED = 9


@pytest.fixture(scope="module")
def ct_study(tmp_path_factory: pytest.TempPathFactory) -> PhantomCtStudy:
    return generate_ct_study(tmp_path_factory.mktemp("ct") / "study", seed=SEED, mask="both", necrosis=True)


def _hu_volume(study: PhantomCtStudy) -> np.ndarray:
    slices = []
    for path in study.ct_files:
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == pydicom.uid.CTImageStorage
        slices.append(ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    return np.stack(slices)


def _gt(path: object) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_ct_series_is_in_hounsfield_units(ct_study: PhantomCtStudy) -> None:
    hu = _hu_volume(ct_study)
    labels = _gt(ct_study.ground_truth.tissue_labels)
    assert hu[labels == Tissue.AIR].mean() == pytest.approx(-1000.0, abs=15.0)
    assert hu[labels == Tissue.BREAST_FAT].mean() == pytest.approx(-100.0, abs=10.0)
    lesion = [hu[labels == t].mean() for t in (Tissue.LESION_PERSISTENT, Tissue.LESION_PLATEAU, Tissue.LESION_WASHOUT)]
    assert lesion[0] < lesion[1] < lesion[2]
    assert hu[labels == Tissue.NECROSIS].mean() < lesion[0]
    image = sitk.ReadImage([str(p) for p in ct_study.ct_files])
    reference = sitk.ReadImage(str(ct_study.ground_truth.tumour_mask))
    assert image.GetSize() == reference.GetSize()
    assert np.allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-4)
    assert np.allclose(image.GetSpacing(), reference.GetSpacing(), atol=1e-4)


def test_rtstruct_references_the_ct_series_and_matches_the_mask(ct_study: PhantomCtStudy) -> None:
    rs = pydicom.dcmread(ct_study.mask_files["rtstruct"])
    assert rs.Modality == "RTSTRUCT" and rs.StudyInstanceUID == ct_study.study_instance_uid
    series_ref = rs.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series_ref.SeriesInstanceUID == ct_study.series_instance_uid
    ct_uids = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in ct_study.ct_files}
    assert {item.ReferencedSOPInstanceUID for item in series_ref.ContourImageSequence} <= ct_uids
    assert [roi.ROIName for roi in rs.StructureSetROISequence] == ["Tumour"]
    mask = RTStructBuilder.create_from(str(ct_study.ct_dir), str(ct_study.mask_files["rtstruct"]))
    recovered = mask.get_roi_mask_by_name("Tumour").transpose(2, 0, 1)
    truth = _gt(ct_study.ground_truth.tumour_mask).astype(bool)
    dice = 2.0 * (recovered & truth).sum() / (recovered.sum() + truth.sum())
    assert dice > 0.9


def test_seg_references_the_ct_series_and_equals_the_mask(ct_study: PhantomCtStudy) -> None:
    seg = hd.seg.segread(ct_study.mask_files["seg"])
    assert seg.StudyInstanceUID == ct_study.study_instance_uid
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct_study.series_instance_uid
    uids = [pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in ct_study.ct_files]
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1])[..., 0]
    assert np.array_equal(pixels.astype(bool), _gt(ct_study.ground_truth.tumour_mask).astype(bool))


def test_ct_study_is_deterministic(ct_study: PhantomCtStudy, tmp_path: Path) -> None:
    again = generate_ct_study(tmp_path / "again", seed=SEED, mask="both", necrosis=True)
    pairs = [*zip(ct_study.ct_files, again.ct_files, strict=True)]
    pairs += [(ct_study.mask_files[k], again.mask_files[k]) for k in ("rtstruct", "seg")]
    for first, second in pairs:
        assert first.read_bytes() == second.read_bytes(), first.name


def test_unknown_mask_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PhantomError, match="unknown mask kind"):
        generate_ct_study(tmp_path / "x", mask="nifti")

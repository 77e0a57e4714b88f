"""RTSTRUCT / SEG rasterisation (oncohabitat.dicomio.masks) on real structure sets and built SEGs."""

from __future__ import annotations

import copy
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from oncohabitat.dicomio import (
    LoadedSeries,
    MaskError,
    MaskSelectionError,
    RoiSelection,
    assemble_series,
    load_mask,
    load_series,
    rasterise_rtstruct,
    rasterise_seg,
    select_roi,
)
from tests.unit.test_dicomio_support import make_series

STS = "ibsi/ibsi_validation"
PHANTOM = "ibsi/ibsi_1_ct_radiomics_phantom"


def _series(folder: Path) -> LoadedSeries:
    return load_series(sorted(p for p in folder.iterdir() if p.is_file()))


def _dice(a: NDArray[np.bool_], b: NDArray[np.bool_]) -> float:
    return float(2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))


def _reference_on_grid(nifti: Path, grid: sitk.Image) -> NDArray[np.bool_]:
    """NIfTI voxel mask resampled (nearest neighbour, physical space) onto ``grid``: orientation-safe."""
    reference = sitk.Resample(sitk.ReadImage(str(nifti)), grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return sitk.GetArrayFromImage(reference).astype(bool)


@pytest.mark.parametrize(
    ("image_dir", "rtstruct", "nifti_mask", "roi_name"),
    [
        (
            f"{STS}/dicom/STS_001/CT/image",
            f"{STS}/dicom/STS_001/CT/mask/RS.dcm",
            f"{STS}/nifti/STS_001/CT_mask.nii.gz",
            "GTV_Mass_CT",
        ),
        (
            f"{STS}/dicom/STS_001/MR_T1/image",
            f"{STS}/dicom/STS_001/MR_T1/mask/RS.dcm",
            f"{STS}/nifti/STS_001/MR_T1_mask.nii.gz",
            "GTV_Mass_MR_T1",
        ),
        (
            f"{PHANTOM}/dicom/image",
            f"{PHANTOM}/dicom/mask/DCM_RS_00060.dcm",
            f"{PHANTOM}/nifti/mask/mask.nii.gz",
            "GTV-1",
        ),
    ],
)
def test_real_rtstruct_matches_reference_voxel_mask(
    shared_data: Path, image_dir: str, rtstruct: str, nifti_mask: str, roi_name: str
) -> None:
    series = _series(shared_data / image_dir)
    mask = load_mask(shared_data / rtstruct, series)

    assert mask.roi_name == roi_name
    assert mask.source_kind == "RTSTRUCT"
    assert mask.image.GetSize() == series.image.GetSize()
    assert mask.image.GetOrigin() == series.image.GetOrigin()
    assert mask.image.GetDirection() == series.image.GetDirection()
    ours = sitk.GetArrayFromImage(mask.image).astype(bool)
    reference = _reference_on_grid(shared_data / nifti_mask, series.image)
    dice = _dice(ours, reference)
    print(f"Dice {roi_name}: {dice:.4f} ({ours.sum()} vs {reference.sum()} voxels)")
    assert dice > 0.95
    # A y flip (the classic orientation error) would be far worse.
    assert _dice(ours[:, ::-1, :], reference) < dice - 0.1
    assert mask.voxel_count == int(ours.sum())


def test_ambiguous_and_unknown_rois_in_a_real_structure_set(shared_data: Path, sts_ct_dir: Path) -> None:
    series = _series(sts_ct_dir / "image")
    original = pydicom.dcmread(sts_ct_dir / "mask/RS.dcm")
    with_second = copy.deepcopy(original)
    extra = copy.deepcopy(with_second.StructureSetROISequence[0])
    extra.ROINumber = 99
    extra.ROIName = "Tumour bed"
    with_second.StructureSetROISequence.append(extra)
    with pytest.raises(MaskSelectionError) as info:
        rasterise_rtstruct(with_second, series)
    assert info.value.reason == "AMBIGUOUS_ROI"
    assert info.value.roi_names == ("GTV_Mass_CT", "Tumour bed")
    assert "Tumour bed" in info.value.message

    chosen = rasterise_rtstruct(with_second, series, RoiSelection(name="GTV_Mass_CT"))
    assert chosen.roi_name == "GTV_Mass_CT"

    with pytest.raises(MaskSelectionError) as info:
        rasterise_rtstruct(original, series, RoiSelection(name="Liver"))
    assert info.value.reason == "NO_ROI"


def test_frame_of_reference_mismatch_is_refused(sts_ct_dir: Path) -> None:
    series = _series(sts_ct_dir / "image")
    rtstruct = pydicom.dcmread(sts_ct_dir / "mask/RS.dcm")
    rtstruct.StructureSetROISequence[0].ReferencedFrameOfReferenceUID = generate_uid()
    with pytest.raises(MaskError) as info:
        rasterise_rtstruct(rtstruct, series)
    assert info.value.reason == "FRAME_OF_REFERENCE_MISMATCH"


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["GTV_Mass_CT"], 0),
        (["Body", "GTV-1", "CTV"], 1),
        (["External", "Tumour 2"], 1),
        (["lung", "lesion"], 1),
        (["Body"], 0),  # the only ROI
    ],
)
def test_select_roi_default_rule(names: list[str], expected: int) -> None:
    assert select_roi(names) == expected


@pytest.mark.parametrize(
    ("names", "reason"),
    [(["Body", "Lung"], "NO_ROI"), ([], "NO_ROI"), (["GTV1", "GTV2"], "AMBIGUOUS_ROI"), (["GTVp", "CTV"], "NO_ROI")],
)
def test_select_roi_failures_list_names(names: list[str], reason: str) -> None:
    with pytest.raises(MaskSelectionError) as info:
        select_roi(names)
    assert info.value.reason == reason
    assert info.value.roi_names == tuple(names)


def test_select_roi_custom_pattern() -> None:
    assert select_roi(["GTVp", "GTVn"], RoiSelection(pattern=r"(?i)^gtvp$")) == 0


def _rtstruct(series: LoadedSeries, contours: list[tuple[list[float], str | None]]) -> Dataset:
    """Minimal RTSTRUCT with one ROI "GTV"; each contour is (ContourData, referenced SOP UID or None)."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ds.SOPInstanceUID = generate_uid()
    frame = Dataset()
    frame.FrameOfReferenceUID = series.frame_of_reference_uid
    ds.ReferencedFrameOfReferenceSequence = [frame]
    roi = Dataset()
    roi.ROINumber = 7
    roi.ROIName = "GTV"
    roi.ReferencedFrameOfReferenceUID = series.frame_of_reference_uid
    ds.StructureSetROISequence = [roi]
    roi_contour = Dataset()
    roi_contour.ReferencedROINumber = 7
    items = []
    for data, uid in contours:
        item = Dataset()
        item.ContourGeometricType = "CLOSED_PLANAR"
        item.NumberOfContourPoints = len(data) // 3
        item.ContourData = data
        if uid is not None:
            image = Dataset()
            image.ReferencedSOPInstanceUID = uid
            item.ContourImageSequence = [image]
        items.append(item)
    roi_contour.ContourSequence = items
    ds.ROIContourSequence = [roi_contour]
    return ds


def _rectangle(x0: float, y0: float, x1: float, y1: float, z: float) -> list[float]:
    return [x0, y0, z, x1, y0, z, x1, y1, z, x0, y1, z]


def test_non_square_anisotropic_grid_and_unlinked_contours() -> None:
    # 12 rows (2 mm apart) x 20 columns (1 mm apart); origin (-10, -20) mm; slices at z = 0, 3, 6, 9 mm.
    series = assemble_series(make_series([0.0, 3.0, 6.0, 9.0], shape=(12, 20), pixel_spacing=(2.0, 1.0)))
    # Rectangle through the centres of columns 3..15 and rows 8..10 (beyond min(rows, columns) = 12 in x).
    x0, x1 = -10.0 + 3 * 1.0, -10.0 + 15 * 1.0
    y0, y1 = -20.0 + 8 * 2.0, -20.0 + 10 * 2.0
    rtstruct = _rtstruct(
        series,
        [
            (_rectangle(x0, y0, x1, y1, 3.0), None),  # no ContourImageSequence
            (_rectangle(x0, y0, x1, y1, 6.0), generate_uid()),  # references an unknown image
            (_rectangle(x0, y0, x1, y1, 30.0), None),  # outside the series: ignored
        ],
    )
    mask = sitk.GetArrayFromImage(rasterise_rtstruct(rtstruct, series).image)
    expected = np.zeros((4, 12, 20), dtype=np.uint8)
    expected[1:3, 8:11, 3:16] = 1
    np.testing.assert_array_equal(mask, expected)


def test_contours_off_the_series_give_empty_roi() -> None:
    series = assemble_series(make_series([0.0, 3.0]))
    rtstruct = _rtstruct(series, [(_rectangle(-9.0, -19.0, -7.0, -17.0, 50.0), None)])
    with pytest.raises(MaskError) as info:
        rasterise_rtstruct(rtstruct, series)
    assert info.value.reason == "EMPTY_ROI"


def _known_mask(shared_data: Path) -> NDArray[np.uint8]:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(shared_data / f"{STS}/nifti/STS_001/CT_mask.nii.gz")))


def _hd_seg(source: list[Dataset], pixels: NDArray[np.bool_], labels: list[str]) -> hd.seg.Segmentation:
    algorithm = hd.AlgorithmIdentificationSequence(
        name="test", family=codes.cid7162.ArtificialIntelligence, version="1"
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label,
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Neoplasm,
            algorithm_type="AUTOMATIC",
            algorithm_identification=algorithm,
        )
        for number, label in enumerate(labels, start=1)
    ]
    return hd.seg.Segmentation(
        source_images=source,
        pixel_array=pixels,
        segmentation_type="BINARY",
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=99,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="1",
        device_serial_number="1",
    )


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_seg_built_with_highdicom_reads_back_exactly(shared_data: Path, sts_ct_dir: Path, tmp_path: Path) -> None:
    series = _series(sts_ct_dir / "image")
    tumour = _known_mask(shared_data).astype(bool)
    necrosis = np.zeros_like(tumour)
    necrosis[30, 100:110, 90:100] = True
    seg = _hd_seg(list(series.headers), np.stack([necrosis, tumour], axis=-1), ["Necrosis", "Tumour"])
    path = tmp_path / "seg.dcm"
    seg.save_as(path)

    mask = load_mask(path, series)
    assert (mask.roi_name, mask.source_kind) == ("Tumour", "SEG")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask.image), tumour.astype(np.uint8))
    assert mask.image.GetOrigin() == series.image.GetOrigin()

    other = rasterise_seg(path, series, RoiSelection(name="Necrosis"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(other.image), necrosis.astype(np.uint8))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_seg_of_a_re_exported_series_is_matched_by_geometry(shared_data: Path, sts_ct_dir: Path) -> None:
    series = _series(sts_ct_dir / "image")
    tumour = _known_mask(shared_data).astype(bool)
    renamed = []
    for header in series.headers:
        clone = copy.deepcopy(header)
        clone.SOPInstanceUID = generate_uid()
        renamed.append(clone)
    seg = _hd_seg(renamed, tumour[..., np.newaxis], ["GTV"])
    mask = rasterise_seg(seg, series)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask.image), tumour.astype(np.uint8))


def test_other_sop_classes_are_refused(sts_ct_dir: Path) -> None:
    series = _series(sts_ct_dir / "image")
    with pytest.raises(MaskError) as info:
        load_mask(sorted((sts_ct_dir / "image").iterdir())[0], series)
    assert info.value.reason == "UNSUPPORTED_OBJECT"

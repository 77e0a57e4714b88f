"""Phase volume assembly: LPS volumes with rescale applied, refusals with reason codes, optional
resampling onto the pre-contrast grid, compressed transfer syntaxes through pydicom's handlers."""

from __future__ import annotations

import dataclasses
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file
from pydicom.uid import JPEG2000Lossless, RLELossless

from oncohabitat.dicomio.dce import DceClassification, classify_dce, classify_study_files
from oncohabitat.dicomio.phases import PhaseAssemblyError, PhaseAssemblyOptions, assemble_phases
from oncohabitat.dicomio.scan import scan_instances
from oncohabitat.phantom import PhantomStudy, generate_study


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> PhantomStudy:
    return generate_study(tmp_path_factory.mktemp("ph") / "s", size="small", seed=11, layout="per-phase")


def copy_study(
    phantom: PhantomStudy, dest: Path, change: Callable[[int, int, pydicom.Dataset], None] | None = None
) -> DceClassification:
    """Copy the phantom's files to ``dest``, applying ``change(phase, slice, ds)``; classify the copy."""
    for p, files in enumerate(phantom.phase_files):
        for k, path in enumerate(files):
            target = dest / f"p{p}" / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if change is None:
                shutil.copy(path, target)
                continue
            ds = pydicom.dcmread(path)
            change(p, k, ds)
            ds.save_as(target)
    return classify_study_files(sorted(dest.rglob("*.dcm")))


def test_phases_are_lps_volumes_on_one_grid(phantom: PhantomStudy) -> None:
    volumes = assemble_phases(classify_dce(scan_instances(sorted(phantom.dicom_dir.rglob("*.dcm")))))
    assert len(volumes.phases) == 6 and volumes.resampled_indices == ()
    reference = volumes.phases[0].image
    assert reference.GetSize() == (64, 64, 32)
    assert reference.GetSpacing() == pytest.approx((3.0, 3.0, 3.0))
    geometry = phantom.geometry
    assert reference.GetOrigin() == pytest.approx(geometry.origin)
    for phase, files in zip(volumes.phases, phantom.phase_files, strict=True):
        array = sitk.GetArrayFromImage(phase.image)  # (z, y, x)
        first, last = pydicom.dcmread(files[0]), pydicom.dcmread(files[-1])
        assert np.array_equal(array[0], first.pixel_array) and np.array_equal(array[-1], last.pixel_array)


def test_rescale_slope_and_intercept_are_applied(phantom: PhantomStudy, tmp_path: Path) -> None:
    def rescale(_p: int, _k: int, ds: pydicom.Dataset) -> None:
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = "0.5", "-10", "US"

    volumes = assemble_phases(copy_study(phantom, tmp_path, rescale))
    array = sitk.GetArrayFromImage(volumes.phases[0].image)
    raw = pydicom.dcmread(phantom.phase_files[0][5]).pixel_array
    assert array.dtype == np.float32
    assert np.allclose(array[5], raw * 0.5 - 10)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            lambda p, k, ds: (
                setattr(ds, "ImagePositionPatient", [*ds.ImagePositionPatient[:2], ds.ImagePositionPatient[2] + 0.4])
                if (p, k) == (1, 7)
                else None
            ),
            "INCONSISTENT_SPACING",
        ),
        (
            lambda p, k, ds: (
                setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, 0.9998, 0.02]) if (p, k) == (2, 3) else None
            ),
            "MIXED_ORIENTATION",
        ),
        (lambda p, k, ds: delattr(ds, "PixelData") if (p, k) == (3, 0) else None, "MISSING_PIXEL_DATA"),
        (
            lambda p, k, ds: (
                setattr(ds, "ImagePositionPatient", [ds.ImagePositionPatient[0] + 1.5, *ds.ImagePositionPatient[1:]])
                if p == 2
                else None
            ),
            "PHASE_GRID_MISMATCH",
        ),
    ],
    ids=["spacing", "orientation", "pixel-data", "grid"],
)
def test_inconsistent_phases_are_refused_with_a_reason(
    phantom: PhantomStudy, tmp_path: Path, change: Callable[[int, int, pydicom.Dataset], None], reason: str
) -> None:
    classification = copy_study(phantom, tmp_path, change)
    if reason != "MISSING_PIXEL_DATA":  # header-only validation already refuses geometry problems
        assert not classification.eligible and reason in classification.reason
        classification = dataclasses.replace(classification, eligible=True)
    with pytest.raises(PhaseAssemblyError) as error:
        assemble_phases(classification)
    assert error.value.reason == reason


def test_fewer_than_four_slices_are_refused(phantom: PhantomStudy) -> None:
    classification = classify_dce(scan_instances(sorted(phantom.dicom_dir.rglob("*.dcm"))))
    short = dataclasses.replace(classification.phases[0], instances=classification.phases[0].instances[:3])
    with pytest.raises(PhaseAssemblyError) as error:
        assemble_phases(dataclasses.replace(classification, phases=(short, *classification.phases[1:])))
    assert error.value.reason == "TOO_FEW_SLICES"


def test_grid_mismatch_is_resampled_only_when_allowed_and_recorded(phantom: PhantomStudy, tmp_path: Path) -> None:
    def shift(p: int, _k: int, ds: pydicom.Dataset) -> None:
        if p == 2:
            ds.ImagePositionPatient = [ds.ImagePositionPatient[0] + 1.5, *ds.ImagePositionPatient[1:]]

    classification = dataclasses.replace(copy_study(phantom, tmp_path, shift), eligible=True)
    volumes = assemble_phases(classification, PhaseAssemblyOptions(allow_resample=True))
    assert volumes.resampled_indices == (2,)
    assert volumes.phases[2].image.GetOrigin() == pytest.approx(volumes.phases[0].image.GetOrigin())
    assert volumes.phases[2].image.GetSize() == volumes.phases[0].image.GetSize()


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])  # encoders shipped by pydicom / pylibjpeg
def test_compressed_phases_decode_like_uncompressed(phantom: PhantomStudy, tmp_path: Path, syntax: str) -> None:
    classification = copy_study(phantom, tmp_path, lambda _p, _k, ds: ds.compress(syntax))
    assert classification.eligible
    assert {i.transfer_syntax_uid for p in classification.phases for i in p.instances} == {syntax}
    compressed = assemble_phases(classification)
    plain = assemble_phases(classify_dce(scan_instances(sorted(phantom.dicom_dir.rglob("*.dcm")))))
    for a, b in zip(compressed.phases, plain.phases, strict=True):
        assert np.array_equal(sitk.GetArrayFromImage(a.image), sitk.GetArrayFromImage(b.image))


@pytest.mark.parametrize(
    "name", ["MR_small_jp2klossless.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_bigendian.dcm"]
)
def test_pydicom_data_compressed_mr_decodes_through_the_installed_handlers(name: str) -> None:
    reference = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        decoded = pydicom.dcmread(get_testdata_file(name)).pixel_array
    assert np.array_equal(decoded, reference)


def test_jpeg_lossless_decodes_through_pylibjpeg() -> None:
    path = get_testdata_file("JPGLosslessP14SV1_1s_1f_8b.dcm")
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.70"
    assert ds.pixel_array.shape == (int(ds.Rows), int(ds.Columns)) and int(ds.pixel_array.max()) > 0


def test_enhanced_multiframe_mr_is_listed_but_never_a_phase() -> None:
    path = get_testdata_file("emri_small.dcm")
    assert path is not None
    result = classify_study_files([path])
    (series,) = result.series
    assert series.role.value == "multiframe" and "Enhanced MR" in series.reason
    assert not result.eligible and result.reason_code.value == "NO_DYNAMIC_SERIES"

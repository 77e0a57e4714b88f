"""Series assembly (oncohabitat.dicomio.series) on the real IBSI series and on synthetic edge cases."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from oncohabitat.dicomio import SeriesError, SeriesLoadOptions, assemble_series, load_series
from tests.unit.test_dicomio_support import make_series


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file())


def _sitk_reference(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


@pytest.mark.parametrize(
    "relative",
    [
        "ibsi/ibsi_validation/dicom/STS_001/CT/image",
        "ibsi/ibsi_validation/dicom/STS_001/MR_T1/image",
        "ibsi/ibsi_1_ct_radiomics_phantom/dicom/image",
    ],
)
def test_geometry_and_values_match_simpleitk_reader(shared_data: Path, relative: str) -> None:
    folder = shared_data / relative
    files = _files(folder)
    random.Random(7).shuffle(files)  # input order must not matter
    loaded = load_series(files)
    reference = _sitk_reference(folder)

    image = loaded.image
    assert image.GetSize() == reference.GetSize()
    np.testing.assert_allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(image.GetSpacing(), reference.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(image.GetDirection(), reference.GetDirection(), atol=1e-6)
    assert image.GetPixelID() == sitk.sitkInt16
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(reference))


def test_sop_uids_follow_the_slice_normal_not_file_names(shared_data: Path) -> None:
    # The phantom's file names run opposite to the slice positions.
    files = _files(shared_data / "ibsi/ibsi_1_ct_radiomics_phantom/dicom/image")
    loaded = load_series(files)
    headers = {str(ds.SOPInstanceUID): ds for ds in (pydicom.dcmread(f, stop_before_pixels=True) for f in files)}
    z = [float(headers[uid].ImagePositionPatient[2]) for uid in loaded.sop_instance_uids]
    assert z == sorted(z)
    assert len(loaded.sop_instance_uids) == len(files) == loaded.image.GetSize()[2]
    assert [str(ds.SOPInstanceUID) for ds in loaded.headers] == list(loaded.sop_instance_uids)
    assert "PixelData" not in loaded.headers[0]
    assert loaded.modality == "CT"
    assert loaded.series_instance_uid == str(headers[loaded.sop_instance_uids[0]].SeriesInstanceUID)


def test_a_missing_slice_in_a_real_series_is_refused(sts_ct_dir: Path) -> None:
    files = _files(sts_ct_dir / "image")
    with pytest.raises(SeriesError) as info:
        load_series(files[:30] + files[31:])
    assert info.value.reason == "INCONSISTENT_SPACING"


def test_rescale_to_float32_when_slope_is_fractional() -> None:
    datasets = make_series([0.0, 2.0, 4.0], slope=0.5, intercept=-10.0)
    loaded = assemble_series(datasets)
    array = sitk.GetArrayFromImage(loaded.image)
    assert array.dtype == np.float32
    assert array.shape == (3, 6, 5)  # (z, y, x)
    # slice 2, row 3, column 4: raw 2*100 + 3*10 + 4 = 234 -> 0.5 * 234 - 10
    assert array[2, 3, 4] == pytest.approx(107.0)
    assert loaded.image.GetSpacing() == pytest.approx((1.0, 1.0, 2.0))


def test_integer_rescale_gives_int16_with_hounsfield_values() -> None:
    loaded = assemble_series(make_series([5.0, 0.0, 10.0]))  # shuffled positions
    array = sitk.GetArrayFromImage(loaded.image)
    assert array.dtype == np.int16
    # sorted by z: the dataset at z=0 (k=1) comes first
    assert array[0, 0, 0] == 100 - 1024
    assert loaded.image.GetOrigin() == pytest.approx((-10.0, -20.0, 0.0))


def test_anisotropic_pixel_spacing_is_x_then_y() -> None:
    loaded = assemble_series(make_series([0.0, 3.0], pixel_spacing=(2.0, 0.5)))
    assert loaded.image.GetSpacing() == pytest.approx((0.5, 2.0, 3.0))


def test_too_few_slices_and_configurable_minimum() -> None:
    with pytest.raises(SeriesError) as info:
        assemble_series(make_series([0.0]))
    assert info.value.reason == "TOO_FEW_SLICES"
    with pytest.raises(SeriesError) as info:
        assemble_series(make_series([0.0, 1.0, 2.0]), SeriesLoadOptions(min_slices=4))
    assert info.value.reason == "TOO_FEW_SLICES"
    assert assemble_series(make_series([0.0, 1.0, 2.0, 3.0]), SeriesLoadOptions(min_slices=4)).image.GetSize()[2] == 4


@pytest.mark.parametrize(
    ("positions", "accepted"),
    [
        ([0.0, 3.0, 6.0, 9.08], True),  # 0.08 mm off: within 0.1 mm and 5 %
        ([0.0, 3.0, 6.0, 9.2], False),  # 0.2 mm off
        ([0.0, 1.0, 2.0, 3.06], False),  # 0.06 mm but 6 % of 1 mm
        ([0.0, 3.0, 9.0, 12.0], False),  # missing slice
    ],
)
def test_spacing_tolerance(positions: list[float], accepted: bool) -> None:
    datasets = make_series(positions)
    if accepted:
        assert assemble_series(datasets).image.GetSize()[2] == len(positions)
    else:
        with pytest.raises(SeriesError) as info:
            assemble_series(datasets)
        assert info.value.reason == "INCONSISTENT_SPACING"


def test_mixed_orientation_is_refused() -> None:
    datasets = make_series([0.0, 1.0, 2.0])
    datasets[1].ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]
    with pytest.raises(SeriesError) as info:
        assemble_series(datasets)
    assert info.value.reason == "MIXED_ORIENTATION"


def test_mixed_size_is_refused() -> None:
    datasets = make_series([0.0, 1.0, 2.0])
    other = make_series([2.0], shape=(7, 5))[0]
    other.SeriesInstanceUID = datasets[0].SeriesInstanceUID
    with pytest.raises(SeriesError) as info:
        assemble_series([*datasets[:2], other])
    assert info.value.reason == "MIXED_SIZE"


def test_missing_pixel_data_is_refused() -> None:
    datasets = make_series([0.0, 1.0, 2.0])
    del datasets[2].PixelData
    with pytest.raises(SeriesError) as info:
        assemble_series(datasets)
    assert info.value.reason == "MISSING_PIXEL_DATA"


def test_duplicate_positions_mixed_series_and_multiframe_are_refused() -> None:
    with pytest.raises(SeriesError) as info:
        assemble_series(make_series([0.0, 1.0, 1.0]))
    assert info.value.reason == "DUPLICATE_POSITION"

    mixed = make_series([0.0, 1.0]) + make_series([2.0])
    with pytest.raises(SeriesError) as info:
        assemble_series(mixed)
    assert info.value.reason == "MIXED_SERIES"

    multiframe = make_series([0.0, 1.0])
    multiframe[0].NumberOfFrames = 2
    with pytest.raises(SeriesError) as info:
        assemble_series(multiframe)
    assert info.value.reason == "MULTIFRAME"


def test_sheared_stack_is_refused() -> None:
    datasets = make_series([0.0, 1.0, 2.0])
    for k, ds in enumerate(datasets):
        ds.ImagePositionPatient = [-10.0 + 0.5 * k, -20.0, float(k)]
    with pytest.raises(SeriesError) as info:
        assemble_series(datasets)
    assert info.value.reason == "OBLIQUE_STACK"


def test_unreadable_file_is_refused(tmp_path: Path, sts_ct_dir: Path) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_text("not dicom")
    files = _files(sts_ct_dir / "image")[:3]
    with pytest.raises(SeriesError) as info:
        load_series([*files, junk])
    assert info.value.reason == "UNREADABLE"
    assert str(junk) not in info.value.message

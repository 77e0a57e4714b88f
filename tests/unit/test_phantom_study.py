"""Unit tests of the DCE-MRI phantom: determinism, timing, kinetics read back from DICOM, geometry, layouts."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from oncohabitat.phantom import PhantomError, PhantomStudy, Tissue, generate_study, kinetic_parameters

SEED = 5
UID_PATTERN = re.compile(r"^2\.25\.(0|[1-9][0-9]*)$")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> PhantomStudy:
    return generate_study(tmp_path_factory.mktemp("per_phase") / "study", size="small", seed=SEED, necrosis=True)


@pytest.fixture(scope="module")
def multi_study(tmp_path_factory: pytest.TempPathFactory) -> PhantomStudy:
    return generate_study(
        tmp_path_factory.mktemp("multi_phase") / "study", size="small", seed=SEED, necrosis=True, layout="multi-phase"
    )


def _z(ds: pydicom.Dataset) -> float:
    return float(ds.ImagePositionPatient[2])


def read_phases(files: list[Path]) -> dict[int, np.ndarray]:
    """Volumes (z, y, x) per TemporalPositionIdentifier, slices sorted by ImagePositionPatient."""
    by_phase: dict[int, list[pydicom.Dataset]] = defaultdict(list)
    for path in files:
        ds = pydicom.dcmread(path)
        by_phase[int(ds.TemporalPositionIdentifier)].append(ds)
    return {
        phase: np.stack([ds.pixel_array for ds in sorted(items, key=_z)]).astype(np.float64)
        for phase, items in sorted(by_phase.items())
    }


def read_gt(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def all_files(study: PhantomStudy) -> list[Path]:
    return [path for phase in study.phase_files for path in phase]


def test_small_study_shape_and_phase_count(study: PhantomStudy) -> None:
    assert len(study.phase_files) == 6  # 1 pre + 5 post
    assert all(len(files) == 32 for files in study.phase_files)
    assert len(study.series_dirs) == 6
    ds = pydicom.dcmread(study.phase_files[0][0])
    assert (ds.Rows, ds.Columns) == (64, 64)
    assert ds.SOPClassUID == pydicom.uid.MRImageStorage
    assert str(ds.PatientName) == f"PHANTOM^{SEED}"
    assert ds.PatientID == f"PH{SEED}"


def test_same_seed_gives_identical_files_and_other_seed_differs(study: PhantomStudy, tmp_path: Path) -> None:
    again = generate_study(tmp_path / "again", size="small", seed=SEED, necrosis=True)
    for first, second in zip(all_files(study), all_files(again), strict=True):
        assert first.relative_to(study.out_dir) == second.relative_to(again.out_dir)
        assert first.read_bytes() == second.read_bytes()
    for name in ("tumour_mask", "compartments", "breast_mask"):
        assert np.array_equal(read_gt(getattr(study.ground_truth, name)), read_gt(getattr(again.ground_truth, name)))
    other = generate_study(tmp_path / "other", size="small", seed=SEED + 1, necrosis=True)
    first_pixels = pydicom.dcmread(study.phase_files[3][16]).PixelData
    assert first_pixels != pydicom.dcmread(other.phase_files[3][16]).PixelData
    assert pydicom.dcmread(study.phase_files[0][0]).StudyInstanceUID != other.study_instance_uid


def test_uids_are_valid_unique_and_from_2_25(study: PhantomStudy) -> None:
    sop_uids, series_uids = set(), set()
    for path in all_files(study):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for uid in (ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.FrameOfReferenceUID):
            assert UID_PATTERN.match(uid) and len(uid) <= 64
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        sop_uids.add(ds.SOPInstanceUID)
        series_uids.add(ds.SeriesInstanceUID)
    assert len(sop_uids) == 6 * 32
    assert len(series_uids) == 6


def test_phase_times_are_monotonic_in_metadata_and_dicom(study: PhantomStudy) -> None:
    times = study.phase_times_s
    assert times[0] == 0.0 and bool(np.all(np.diff(times) > 0))
    assert times[1] > study.injection_time_s
    acquisition = []
    for phase, files in enumerate(study.phase_files):
        ds = pydicom.dcmread(files[0], stop_before_pixels=True)
        assert int(ds.TemporalPositionIdentifier) == phase + 1
        assert int(ds.NumberOfTemporalPositions) == 6
        assert ds.AcquisitionTime == ds.ContentTime
        tm = ds.AcquisitionTime
        acquisition.append(int(tm[:2]) * 3600 + int(tm[2:4]) * 60 + float(tm[4:]))
        assert ("ContrastBolusAgent" in ds) == (phase > 0)
    assert np.allclose(np.diff(acquisition), np.diff(times))
    meta = json.loads(study.metadata_json.read_text())
    assert meta["phase_times_s"] == list(times)


def test_compartment_curves_read_back_from_dicom_have_their_shapes(study: PhantomStudy) -> None:
    phases = read_phases(all_files(study))
    signal = np.stack([phases[p] for p in sorted(phases)])  # (phase, z, y, x)
    compartments = read_gt(study.ground_truth.compartments)
    curves = {}
    for code in (1, 2, 3):
        mask = compartments == code
        assert mask.sum() >= 30
        mean = signal[:, mask].mean(axis=1)
        curves[code] = mean / mean[0] - 1.0  # relative enhancement per phase
    persistent, plateau, washout = curves[1][1:], curves[2][1:], curves[3][1:]
    assert np.all(np.diff(persistent) > 0.0) and persistent[-1] > 1.5 * persistent[0]
    assert plateau[0] > 0.8 and np.all(np.abs(plateau - plateau[0]) <= 0.1 * plateau[0])
    peak = int(np.argmax(washout))
    assert peak <= 1 and np.all(np.diff(washout[peak:]) < 0.0) and washout[-1] < 0.8 * washout[peak]
    # Ordering of the kinetic maps (S1 = first post-contrast phase, S2 = last phase) on the mean curves.
    params = [
        kinetic_parameters(signal[:, compartments == code].mean(axis=1), study.phase_times_s, 1, len(phases) - 1)
        for code in (1, 2, 3)
    ]
    for name in ("pe", "ser", "wis", "wos"):
        values = [getattr(p, name) for p in params]
        assert values[0] < values[1] < values[2], (name, values)


def test_necrotic_core_does_not_enhance(study: PhantomStudy) -> None:
    phases = read_phases(all_files(study))
    necrosis = read_gt(study.ground_truth.necrosis_mask).astype(bool)
    assert necrosis.any() and study.lesion is not None and study.lesion.necrosis
    pre, last = phases[1][necrosis].mean(), phases[6][necrosis].mean()
    assert abs(last - pre) < 0.05 * pre


def _sitk_series(directory: Path) -> list[sitk.Image]:
    images = []
    for series_id in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(directory)):
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(directory), series_id))
        images.append(reader.Execute())
    return images


def _assert_same_geometry(image: sitk.Image, reference: sitk.Image) -> None:
    assert image.GetSize() == reference.GetSize()
    assert np.allclose(image.GetSpacing(), reference.GetSpacing(), atol=1e-4)
    assert np.allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-4)
    assert np.allclose(image.GetDirection(), reference.GetDirection(), atol=1e-6)


def test_sitk_series_reader_rebuilds_every_phase_on_the_ground_truth_grid(study: PhantomStudy) -> None:
    reference = sitk.ReadImage(str(study.ground_truth.tumour_mask))
    assert reference.GetSize() == study.size_xyz
    phases = read_phases(all_files(study))
    for phase, series_dir in enumerate(study.series_dirs):
        images = _sitk_series(series_dir)
        assert len(images) == 1
        _assert_same_geometry(images[0], reference)
        assert np.array_equal(sitk.GetArrayFromImage(images[0]), phases[phase + 1])
    for name in ("compartments", "necrosis_mask", "breast_mask", "tissue_labels"):
        _assert_same_geometry(sitk.ReadImage(str(getattr(study.ground_truth, name))), reference)


def test_ground_truth_aligns_with_the_lesion_in_the_pixels(study: PhantomStudy) -> None:
    phases = read_phases(all_files(study))
    subtraction = phases[2] - phases[1]  # early enhancement
    tumour = read_gt(study.ground_truth.tumour_mask).astype(bool)
    breast = read_gt(study.ground_truth.breast_mask).astype(bool)
    enhancing = read_gt(study.ground_truth.compartments) > 0
    assert subtraction[enhancing].mean() > 5.0 * subtraction[breast & ~tumour].mean()
    # a 3-voxel shift destroys the alignment
    assert subtraction[np.roll(enhancing, 3, axis=2)].mean() < 0.7 * subtraction[enhancing].mean()


def test_metadata_json_matches_ground_truth(study: PhantomStudy) -> None:
    meta = json.loads(study.metadata_json.read_text())
    assert meta["seed"] == SEED and meta["size"] == "small" and meta["n_phases"] == 6
    tumour = read_gt(study.ground_truth.tumour_mask).astype(bool)
    index = np.argwhere(tumour).mean(axis=0)
    centre = study.geometry.index_to_lps(index)[0]
    lesion = meta["lesion"]
    assert np.allclose(lesion["centre_lps_mm"], centre, atol=1e-6)
    assert lesion["volume_ml"] == pytest.approx(tumour.sum() * np.prod(study.geometry.spacing) / 1000.0)
    fractions = lesion["compartment_fractions"]
    assert sum(fractions.values()) == pytest.approx(1.0)
    assert fractions["3"] == pytest.approx(0.4, abs=0.02)
    breast = read_gt(study.ground_truth.breast_mask).astype(bool)
    labels = read_gt(study.ground_truth.tissue_labels)
    assert np.all(breast[tumour]) and not np.any(breast & (labels == Tissue.SKIN))
    assert not np.any(breast & (labels == Tissue.MUSCLE))
    expected = meta["curves"]["expected_kinetics"]["compartments"]
    assert expected["1"]["ser"] < expected["2"]["ser"] < expected["3"]["ser"]


def test_multi_phase_layout_splits_back_by_temporal_position(study: PhantomStudy, multi_study: PhantomStudy) -> None:
    assert len(multi_study.series_dirs) == 1
    files = sorted(multi_study.series_dirs[0].glob("*.dcm"))
    assert len(files) == 6 * 32
    groups: dict[int, list[Path]] = defaultdict(list)
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert int(ds.NumberOfTemporalPositions) == 6
        groups[int(ds.TemporalPositionIdentifier)].append(path)
    assert sorted(groups) == [1, 2, 3, 4, 5, 6]
    reference = sitk.ReadImage(str(multi_study.ground_truth.tumour_mask))
    per_phase = read_phases(all_files(study))
    for tpi, group in groups.items():
        ordered = sorted(group, key=lambda p: _z(pydicom.dcmread(p, stop_before_pixels=True)))
        image = sitk.ReadImage([str(p) for p in ordered])
        _assert_same_geometry(image, reference)
        # same seed, other layout: identical pixel data
        assert np.array_equal(sitk.GetArrayFromImage(image), per_phase[tpi])


def test_no_lesion_option(tmp_path: Path) -> None:
    clean = generate_study(tmp_path / "clean", size="small", seed=SEED, lesion=False)
    assert clean.lesion is None
    assert json.loads(clean.metadata_json.read_text())["lesion"] is None
    assert not read_gt(clean.ground_truth.tumour_mask).any()
    assert not read_gt(clean.ground_truth.compartments).any()
    assert read_gt(clean.ground_truth.breast_mask).sum() > 1000
    assert len(clean.phase_files) == 6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": "huge"}, "unknown phantom size"),
        ({"layout": "mosaic"}, "unknown layout"),
        ({"seed": -1}, "non-negative"),
    ],
)
def test_bad_options_raise_phantom_error(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(PhantomError, match=message):
        generate_study(tmp_path / "x", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "x").exists()


def test_non_empty_output_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(PhantomError, match="not empty"):
        generate_study(tmp_path)


def test_trigger_time_is_optional(tmp_path: Path) -> None:
    strict = generate_study(tmp_path / "strict", size="small", seed=SEED)
    ds = pydicom.dcmread(strict.phase_files[2][0], stop_before_pixels=True)
    assert "TriggerTime" not in ds and int(ds.TemporalPositionIdentifier) == 3
    vendor = generate_study(tmp_path / "vendor", size="small", seed=SEED, trigger_time=True)
    ds = pydicom.dcmread(vendor.phase_files[2][0], stop_before_pixels=True)
    assert float(ds.TriggerTime) == pytest.approx(1000 * (vendor.phase_times_s[2] - vendor.phase_times_s[0]))

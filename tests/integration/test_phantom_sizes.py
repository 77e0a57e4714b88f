"""ispy- and duke-sized phantom generation: counts, geometry read back, timing (reported with -s)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from oncohabitat.phantom import generate_study

pytestmark = pytest.mark.integration


def _check_geometry(path: Path, reference: sitk.Image) -> None:
    image = sitk.ReadImage(str(path))
    size = reference.GetSize()
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert (ds.Columns, ds.Rows) == size[:2]
    spacing = reference.GetSpacing()
    assert [float(v) for v in ds.PixelSpacing] == pytest.approx([spacing[1], spacing[0]])
    assert float(ds.SpacingBetweenSlices) == pytest.approx(spacing[2])
    assert float(ds.SliceThickness) == pytest.approx(spacing[2])
    # the file's position is one of the reference grid's slice positions
    index = reference.TransformPhysicalPointToContinuousIndex(image.GetOrigin())
    assert index[0] == pytest.approx(0.0, abs=1e-4) and index[1] == pytest.approx(0.0, abs=1e-4)
    assert index[2] == pytest.approx(round(index[2]), abs=1e-4) and 0 <= round(index[2]) < size[2]


def test_ispy_study(tmp_path: Path) -> None:
    start = time.perf_counter()
    study = generate_study(tmp_path / "ispy", size="ispy", seed=31)
    elapsed = time.perf_counter() - start
    print(f"ispy generation: {elapsed:.1f} s")
    assert len(study.phase_files) == 4 and all(len(f) == 60 for f in study.phase_files)
    reference = sitk.ReadImage(str(study.ground_truth.tumour_mask))
    assert reference.GetSize() == (256, 256, 60)
    image = sitk.ReadImage([str(p) for p in study.phase_files[2]])
    assert image.GetSize() == reference.GetSize()
    assert np.allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-4)
    assert study.lesion is not None and 3.0 < study.lesion.volume_ml < 40.0


def test_duke_study_geometry_and_time(tmp_path: Path) -> None:
    out = tmp_path / "duke"
    start = time.perf_counter()
    study = generate_study(out, size="duke", seed=41, necrosis=True)
    elapsed = time.perf_counter() - start
    print(f"duke generation: {elapsed:.1f} s")
    try:
        assert elapsed < 120.0
        assert len(study.phase_files) == 4 and all(len(f) == 170 for f in study.phase_files)
        meta = json.loads(study.metadata_json.read_text())
        assert meta["geometry"]["size_xyz"] == [512, 512, 170]
        reference = sitk.ReadImage(str(study.ground_truth.tumour_mask))
        for files in (study.phase_files[0], study.phase_files[-1]):
            for path in (files[0], files[85], files[-1]):
                _check_geometry(path, reference)
        first = pydicom.dcmread(study.phase_files[0][0], stop_before_pixels=True)
        assert [float(v) for v in first.ImagePositionPatient] == pytest.approx(list(reference.GetOrigin()), abs=1e-4)
    finally:
        shutil.rmtree(out)  # ~350 MB

"""The derived objects' builders (``dicomio.seg_export``, ``sr_export``): input checks and the patient module.

Round trips of every region, output and UID rule: tests/unit/test_export_stage.py; dciodvfy on a real CT:
tests/integration/test_dicomio_conformance.py."""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.uid import generate_uid

from oncohabitat.dicomio.errors import ExportError
from oncohabitat.dicomio.masks import load_mask
from oncohabitat.dicomio.seg_export import build_region_seg, region_segment
from oncohabitat.dicomio.series import LoadedSeries, assemble_series, load_series
from oncohabitat.dicomio.sr_export import ModelOutcome, RegionVolume, build_job_sr
from tests.unit.test_dicomio_support import make_series


def _model(**overrides: object) -> ModelOutcome:
    values: dict[str, object] = {
        "model_id": "sts-cox",
        "model_version": "2.1.0",
        "score": 0.7312,
        "risk_group": "high",
        "cutoffs": (0.5,),
        "features": {"tumour/S0/original_firstorder_Mean": 41.25},
    }
    values.update(overrides)
    return ModelOutcome(**values)  # type: ignore[arg-type]


def _seg(headers: list, mask: np.ndarray, uids: dict[str, str]):  # type: ignore[no-untyped-def]
    return build_region_seg(
        headers,
        [region_segment("tumour", "", mask)],
        algorithm_version="0.1.0",
        series_instance_uid=uids.setdefault("seg-series", generate_uid()),
        sop_instance_uid=uids.setdefault("seg", generate_uid()),
    )


@pytest.fixture(scope="module")
def ct(sts_ct_dir: Path) -> LoadedSeries:
    return load_series(sorted((sts_ct_dir / "image").iterdir()))


@pytest.fixture(scope="module")
def tumour(ct: LoadedSeries, sts_ct_dir: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(load_mask(sts_ct_dir / "mask/RS.dcm", ct).image).astype(bool)


def test_seg_refuses_a_mask_off_the_source_grid_and_an_unknown_region(ct: LoadedSeries, tumour: np.ndarray) -> None:
    with pytest.raises(ExportError) as off_grid:
        _seg(ct.headers, tumour[1:], {})
    assert off_grid.value.reason == "GRID_MISMATCH"
    with pytest.raises(ExportError) as unknown:
        region_segment("breast_mask", "", tumour)
    assert unknown.value.reason == "UNKNOWN_LABEL"


def test_sr_refuses_a_non_finite_score(ct: LoadedSeries, tumour: np.ndarray) -> None:
    uids: dict[str, str] = {}
    seg = _seg(ct.headers, tumour, uids)
    with pytest.raises(ExportError) as info:
        build_job_sr(
            ct.headers,
            seg,
            [_model(score=math.nan)],
            [],
            algorithm_version="0.1.0",
            uid=lambda name: uids.setdefault(name, generate_uid()),
        )
    assert info.value.reason == "INVALID_SCORE"


def test_patient_attributes_are_copied_but_never_logged_or_warned(caplog: pytest.LogCaptureFixture) -> None:
    datasets = make_series([0.0, 2.0, 4.0], shape=(8, 8))
    datasets[0].StudyID = "A-STUDY-ID-LONGER-THAN-16"  # invalid SH length in the source
    for ds in datasets:
        del ds.AccessionNumber  # type 2, absent in the source
    series = assemble_series(datasets)
    mask = np.zeros((3, 8, 8), dtype=bool)
    mask[1, 2:5, 2:5] = True
    uids: dict[str, str] = {}
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seg = _seg(series.headers, mask, uids)
        sr = build_job_sr(
            series.headers,
            seg,
            [_model()],
            [RegionVolume("tumour", 0.036)],
            algorithm_version="0.1.0",
            uid=lambda name: uids.setdefault(name, generate_uid()),
        )
    assert seg.PatientName == "Synthetic^Patient" and sr.PatientID == "SYNTH-0001"
    assert sr.StudyID == "A-STUDY-ID-LONGE"  # truncated to SH's 16 characters
    assert sr.AccessionNumber == "" and seg.AccessionNumber == ""
    assert "AccessionNumber" not in series.headers[0]  # the source is left as it was
    emitted = caplog.text + " ".join(str(w.message) for w in caught)
    for secret in ("Synthetic", "SYNTH-0001", "19700101", "ACC-SYNTH", "A-STUDY-ID"):
        assert secret not in emitted

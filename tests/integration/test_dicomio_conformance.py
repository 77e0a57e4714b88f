"""dciodvfy (dicom3tools) validates the SEG and SR that oncohabitat.dicomio.export builds on the real CT."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from oncohabitat.dicomio import ResultForSR, build_result_sr, build_seg, load_mask, load_series
from tests.conftest import require_tool

pytestmark = pytest.mark.integration


def _dciodvfy(dataset: Dataset, path: Path) -> list[str]:
    dataset.save_as(path)
    run = subprocess.run(
        [require_tool("dciodvfy"), str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    return (run.stdout + run.stderr).splitlines()


def test_seg_and_sr_have_no_dciodvfy_errors(sts_ct_dir: Path, tmp_path: Path) -> None:
    series = load_series(sorted((sts_ct_dir / "image").iterdir()))
    tumour = load_mask(sts_ct_dir / "mask/RS.dcm", series)
    seg = build_seg(series.headers, tumour.image, {1: "Tumour"}, algorithm_version="0.1.0")
    result = ResultForSR(
        model_id="sts-cox",
        model_version="2.1.0",
        score=0.7312,
        risk_group="high",
        cutoff=0.5,
        features={"original_firstorder_Mean": 41.25, "original_shape_Sphericity": 0.71},
        contributions={"original_firstorder_Mean": 0.25},
        algorithm_version="0.1.0",
    )
    sr = build_result_sr(series.headers, seg, result)

    seg_report = _dciodvfy(seg, tmp_path / "seg.dcm")
    sr_report = _dciodvfy(sr, tmp_path / "sr.dcm")

    assert "Segmentation" in seg_report
    assert "Comprehensive3DSR" in sr_report
    for report in (seg_report, sr_report):
        errors = [line for line in report if line.startswith("Error")]
        assert errors == []
    # The only SR warnings expected are about the private coding scheme 99ONCOHAB.
    sr_warnings = {line for line in sr_report if line.startswith("Warning") and "Patient's Name" not in line}
    assert all("99ONCOHAB" in line for line in sr_warnings)

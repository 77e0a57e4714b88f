"""dciodvfy (dicom3tools) validates the SEG, the TID 1500 SR and the key-image PDF that the export stage's
builders (``dicomio.seg_export``, ``sr_export``, ``key_image``) make on a real CT series with its RTSTRUCT."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from oncohabitat.dicomio.key_image import build_key_image_pdf, render_key_image, summary_pdf
from oncohabitat.dicomio.masks import load_mask
from oncohabitat.dicomio.seg_export import build_region_seg, region_segment
from oncohabitat.dicomio.series import load_series
from oncohabitat.dicomio.sr_export import ModelOutcome, RegionVolume, build_job_sr
from tests.conftest import require_tool

pytestmark = pytest.mark.integration


def _dciodvfy(dataset: Dataset, path: Path) -> list[str]:
    dataset.save_as(path, enforce_file_format=True)
    run = subprocess.run(
        [require_tool("dciodvfy"), str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    return (run.stdout + run.stderr).splitlines()


def test_seg_sr_and_key_image_have_no_dciodvfy_errors(sts_ct_dir: Path, tmp_path: Path) -> None:
    series = load_series(sorted((sts_ct_dir / "image").iterdir()))
    tumour = sitk.GetArrayFromImage(load_mask(sts_ct_dir / "mask/RS.dcm", series).image).astype(bool)
    assert tumour.any()
    uids: dict[str, str] = {}

    def uid(name: str) -> str:
        return uids.setdefault(name, generate_uid())

    seg = build_region_seg(
        series.headers,
        [region_segment("tumour", "GTV from the RTSTRUCT", tumour)],
        algorithm_version="0.1.0",
        series_instance_uid=uid("seg-series"),
        sop_instance_uid=uid("seg"),
    )
    model = ModelOutcome(
        model_id="sts-cox",
        model_version="2.1.0",
        score=0.7312,
        risk_group="high",
        cutoffs=(0.5,),
        survival=((12.0, 0.91), (60.0, 0.62)),
        time_unit="months",
        features={"tumour/S0/original_firstorder_Mean": 41.25, "tumour/S0/original_shape_Sphericity": 0.71},
        contributions={"tumour/S0/original_firstorder_Mean": 0.25},
        intended_use="research",
    )
    volume_ml = float(tumour.sum() * np.prod(series.image.GetSpacing()) / 1000.0)
    sr = build_job_sr(
        series.headers, seg, [model], [RegionVolume("tumour", volume_ml)], algorithm_version="0.1.0", uid=uid
    )
    key_image, slice_index = render_key_image(sitk.GetArrayFromImage(series.image), tumour, [])
    pdf_bytes = summary_pdf(key_image, slice_index, tumour.shape[0], [], [model], [], "0.1.0")
    pdf = build_key_image_pdf(series.headers, pdf_bytes, uid=uid, referenced=[seg])
    reports = {
        "Segmentation": _dciodvfy(seg, tmp_path / "seg.dcm"),
        "Comprehensive3DSR": _dciodvfy(sr, tmp_path / "sr.dcm"),
        "EncapsulatedPDF": _dciodvfy(pdf, tmp_path / "pdf.dcm"),
    }
    for iod, report in reports.items():
        assert iod in "\n".join(report)
        assert [line for line in report if line.startswith("Error")] == [], iod
    # The only SR warnings expected are about the private coding scheme 99ONCOHAB.
    sr_warnings = {
        line for line in reports["Comprehensive3DSR"] if line.startswith("Warning") and "Patient's Name" not in line
    }
    assert all("99ONCOHAB" in line for line in sr_warnings)

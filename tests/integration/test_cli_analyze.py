"""``oncohabitat analyze DIR``: the whole pipeline in one process on a folder (no servers), results written as
JSON + SEG / SR / PDF; the same folder again is the same job; an empty folder is a clear error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from oncohabitat.phantom import generate_study
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "oncohabitat.cli"]


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "analyze", *args, "--models-dir", str(PROJECT_ROOT / "models")],
        capture_output=True,
        text=True,
        timeout=600,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def test_analyze_writes_the_result_and_the_dicom_objects(tmp_path: Path) -> None:
    study = generate_study(tmp_path / "study", size="ispy", seed=5150)
    out = tmp_path / "out"
    run = _analyze(str(study.dicom_dir), "--out", str(out), "--workers", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    for stage in ("load_study", "segment", "regions", "features", "score", "export"):
        assert stage in run.stdout
    result = json.loads((out / "result.json").read_text())
    assert result["job"]["state"] == "JOB_STATE_DONE"
    demo_ids = {p.name for p in (PROJECT_ROOT / "models" / "scoring").iterdir() if p.name.startswith("demo-")}
    assert {model["model_id"] for model in result["models"]} == demo_ids
    assert {"habitat_1", "tumour"} <= {region["region"] for region in result["regions"]}
    assert set(result["stage_seconds"]) == {"load_study", "segment", "regions", "features", "score", "export"}
    assert result["files"] == ["00-seg.dcm", "01-sr.dcm", "02-doc.dcm", "report.pdf"]
    seg, sr = pydicom.dcmread(out / "00-seg.dcm"), pydicom.dcmread(out / "01-sr.dcm")
    assert seg.Modality == "SEG" and sr.Modality == "SR" and seg.StudyInstanceUID == study.study_instance_uid
    assert len(seg.SegmentSequence) >= 4  # tumour + habitats (+ ring, band)
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")
    again = _analyze(str(study.dicom_dir), "--out", str(out))
    assert (
        again.returncode == 0
        and json.loads((out / "result.json").read_text())["job"]["job_id"] == result["job"]["job_id"]
    )


def test_analyze_of_a_folder_without_dicom_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no images here")
    run = _analyze(str(tmp_path), "--out", str(tmp_path / "out"))
    assert run.returncode == 2 and "INSTANCES_MISSING" in run.stdout

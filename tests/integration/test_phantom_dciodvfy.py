"""dciodvfy (dicom3tools) validation of phantom MR (small, ispy; both layouts), CT, RTSTRUCT and SEG files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from oncohabitat.phantom import generate_ct_study, generate_study
from tests.conftest import require_tool

pytestmark = pytest.mark.integration

#: TriggerTime is written for DCE timing (as vendors do) although the standard ties it to gating.
TRIGGER_TIME_ERROR = "TriggerTime"


def _validate(paths: list[Path]) -> tuple[list[str], list[str]]:
    """(error lines, warning lines) that dciodvfy reports for ``paths``."""
    tool = require_tool("dciodvfy")
    errors, warnings = [], []
    for path in paths:
        result = subprocess.run([tool, "-new", str(path)], capture_output=True, text=True, timeout=60, check=False)
        for line in (result.stdout + result.stderr).splitlines():
            if line.startswith("Error"):
                errors.append(f"{path.name}: {line}")
            elif line.startswith("Warning"):
                warnings.append(f"{path.name}: {line}")
    return errors, warnings


def _sample(phase_files: tuple[tuple[Path, ...], ...]) -> list[Path]:
    """First, middle and last slice of every phase."""
    return [files[i] for files in phase_files for i in sorted({0, len(files) // 2, len(files) - 1})]


@pytest.mark.parametrize(("size", "layout"), [("small", "per-phase"), ("small", "multi-phase"), ("ispy", "per-phase")])
def test_mr_files_have_no_errors(tmp_path: Path, size: str, layout: str) -> None:
    study = generate_study(tmp_path / "mr", size=size, seed=21, layout=layout, necrosis=True)
    errors, warnings = _validate(_sample(study.phase_files))
    assert errors == [] and warnings == []


def test_vendor_style_trigger_time_is_the_only_finding(tmp_path: Path) -> None:
    study = generate_study(tmp_path / "mr", size="small", seed=22, trigger_time=True)
    errors, warnings = _validate(_sample(study.phase_files))
    assert warnings == []
    assert errors and all(TRIGGER_TIME_ERROR in e for e in errors)


def test_ct_rtstruct_and_seg_have_no_errors(tmp_path: Path) -> None:
    study = generate_ct_study(tmp_path / "ct", seed=23, mask="both", necrosis=True)
    files = [study.ct_files[0], study.ct_files[len(study.ct_files) // 2], study.ct_files[-1]]
    errors, warnings = _validate([*files, study.mask_files["rtstruct"], study.mask_files["seg"]])
    assert errors == [] and warnings == []

"""Unit tests of the ``phantom`` typer sub-app as the root CLI mounts it."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from oncohabitat.phantom.cli import app as phantom_app


def _root() -> typer.Typer:
    root = typer.Typer()

    @root.command()
    def version() -> None:
        """Placeholder so that ``phantom`` is a sub-command group."""

    root.add_typer(phantom_app, name="phantom")
    return root


def test_bare_form_generates_a_study(tmp_path: Path) -> None:
    out = tmp_path / "study"
    args = ["phantom", "--out", str(out), "--seed", "4", "--layout", "multi-phase", "--necrosis"]
    result = CliRunner().invoke(_root(), args)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "phantom.json").read_text())
    assert meta["seed"] == 4 and meta["layout"] == "multi-phase" and meta["lesion"]["necrosis"] is True
    assert len(list((out / "dicom" / "series_01").glob("*.dcm"))) == 6 * 32


def test_no_lesion_flag(tmp_path: Path) -> None:
    result = CliRunner().invoke(_root(), ["phantom", "--out", str(tmp_path / "s"), "--no-lesion"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "s" / "phantom.json").read_text())["lesion"] is None


def test_cohort_and_ct_subcommands(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(_root(), ["phantom", "cohort", "--n", "2", "--out", str(tmp_path / "cohort"), "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "cohort" / "clinical.csv").read_text().splitlines()) == 3
    result = runner.invoke(_root(), ["phantom", "ct", "--out", str(tmp_path / "ct"), "--mask", "seg"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ct" / "dicom" / "seg" / "SEG_00001.dcm").is_file()
    assert not (tmp_path / "ct" / "dicom" / "rtstruct").exists()


def test_errors_exit_with_code_2(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(_root(), ["phantom"]).exit_code == 2  # --out missing
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    result = runner.invoke(_root(), ["phantom", "--out", str(tmp_path / "busy")])
    assert result.exit_code == 2
    assert "not empty" in result.output
    assert runner.invoke(_root(), ["phantom", "--out", str(tmp_path / "s"), "--size", "huge"]).exit_code == 2

"""``oncohabitat-train habitats``: population centroids fitted on the training split only, written as a verified,
locked, byte-deterministic ``habitats`` bundle that the regions code uses in frozen mode (extraction included)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from oncohabitat.bundles import load_bundle, read_lock
from oncohabitat.common.volume import Geometry
from oncohabitat.phantom.cohort import generate_cohort
from oncohabitat.regions import build_regions, load_frozen_habitats, select_phases
from oncohabitat.regions.grid import map_mask_to_grid
from oncohabitat.regions.profile import FrozenCentroidsRef, RegionProfile
from oncohabitat_training.cli import main
from oncohabitat_training.cohorts import load_cohort
from oncohabitat_training.cohorts.phantom import write_phantom_cohort_file
from oncohabitat_training.extraction.loading import load_phases, read_image
from oncohabitat_training.extraction.patient import phase_inputs
from oncohabitat_training.extraction.profile import load_plan
from oncohabitat_training.extraction.run import ExtractConfig, run_extraction
from oncohabitat_training.extraction.segment import SegmentationOptions
from oncohabitat_training.habitats import voxels as voxel_step
from oncohabitat_training.habitats.fit import (
    HabitatFitConfig,
    HabitatFitError,
    HabitatFitReport,
    fit_cohort_habitats,
)
from oncohabitat_training.habitats.voxels import VoxelResult, VoxelTask

KINETIC = ["WIS", "WOS", "SER", "PE"]
DEMO_RECIPE = (
    Path(__file__).resolve().parents[2] / "training/oncohabitat_training/recipes/demo/demo-seed001-pcr-logistic.yaml"
)
KEY = "habitats/phantom-habitats/1.0.0"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Three small phantoms: case_0000 and case_0001 train, case_0002 validation."""
    root = tmp_path_factory.mktemp("phantom") / "cohort"
    generate_cohort(root, 3, "small", seed=7)
    path = write_phantom_cohort_file(root, validation_fraction=0.34)
    assert [p.split for p in load_cohort(path).patients] == ["train", "train", "validation"]
    return root, path


def _config(out: Path) -> HabitatFitConfig:
    return HabitatFitConfig(out=out, bundle_id="phantom-habitats", version="1.0.0", workers=1)


@pytest.fixture(scope="module")
def fitted(cohort: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> HabitatFitReport:
    report = fit_cohort_habitats(cohort[1], RegionProfile(), _config(tmp_path_factory.mktemp("models")))
    assert report.bundle is not None and report.failures == ()
    return report


def _files(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def _root(report: HabitatFitReport) -> Path:
    assert report.bundle is not None
    return report.bundle.path.parents[2]


def test_bundle_loads_with_the_serving_loader_and_matches_the_lock(fitted: HabitatFitReport) -> None:
    root = _root(fitted)
    lock = read_lock(root)
    assert lock is not None and set(lock) == {KEY}
    bundle = load_bundle(root / KEY, lock[KEY], kind="habitats")
    assert bundle.manifest_sha256 == lock[KEY]
    assert (bundle.manifest.k, bundle.manifest.parameters) == (3, KINETIC)
    assert fitted.reference == FrozenCentroidsRef(
        file=f"{KEY}/centroids.json", sha256=bundle.manifest.files["centroids.json"]
    )
    frozen = load_frozen_habitats(root, fitted.reference)
    assert frozen.features == tuple(KINETIC) and frozen.k == 3 and frozen.scaler.kind == "zscore"
    assert fitted.n_patients == 2 and "2 patients" in bundle.manifest.notes[0]
    assert "case_" not in (root / KEY / "manifest.json").read_text()  # no patient id in the bundle
    # the printed profile section is a valid frozen-mode profile using these centroids
    profile = RegionProfile.model_validate({"habitats": fitted.habitats})
    assert profile.habitats.mode == "frozen" and profile.habitats.frozen_centroids == fitted.reference


def test_the_cli_gives_a_byte_identical_bundle_and_prints_the_reference(
    cohort: tuple[Path, Path], fitted: HabitatFitReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "models"
    argv = ["habitats", str(cohort[1]), "--recipe", str(DEMO_RECIPE), "--out", str(out)]
    argv += ["--id", "phantom-habitats", "--version", "1.0.0", "--workers", "1"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert fitted.reference is not None and fitted.reference.sha256 in printed and fitted.reference.file in printed
    section = json.loads(printed[printed.index("{") :])
    assert section == {"habitats": fitted.habitats}
    assert _files(out) == _files(_root(fitted))  # manifest, centroids and lock, byte for byte
    assert main(argv) == 2  # the same id and version again: refused without --replace
    assert "already exists" in capsys.readouterr().err
    assert main([*argv, "--replace"]) == 0
    assert _files(out) == _files(_root(fitted))


def test_validation_patients_are_never_loaded_and_cannot_change_the_bundle(
    cohort: tuple[Path, Path], fitted: HabitatFitReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = yaml.safe_load(cohort[1].read_text())
    validation = document["patients"][2]
    assert validation["split"] == "validation"
    validation["image"] = {"dicom": "case_0000/dicom"}  # another study and mask for the validation patient
    validation["mask"] = "case_0000/ground_truth/tumour_mask.nrrd"
    changed = cohort[0] / "cohort-changed-validation.yaml"
    changed.write_text(yaml.safe_dump(document, sort_keys=False))
    loaded: list[str] = []
    real = voxel_step.patient_voxels

    def watched(task: VoxelTask) -> VoxelResult:
        loaded.append(task.patient.patient_id)
        return real(task)

    monkeypatch.setattr(voxel_step, "patient_voxels", watched)
    report = fit_cohort_habitats(changed, RegionProfile(), _config(tmp_path / "models"))
    assert loaded == ["case_0000", "case_0001"] and report.n_patients == 2
    assert _files(tmp_path / "models") == _files(_root(fitted))


def _regions_of(case: Path, profile: RegionProfile, models: Path) -> dict[str, dict[str, float]]:
    (patient,) = [p for p in load_cohort(case.parent / "cohort.yaml").patients if p.patient_id == case.name]
    loaded = load_phases(patient)
    mask = read_image(case / "ground_truth" / "tumour_mask.nrrd", "mask")
    phases = select_phases(phase_inputs(loaded))
    tumour = map_mask_to_grid(sitk.GetArrayFromImage(mask), Geometry.of(mask), phases.shape, phases.geometry)
    assert profile.habitats.frozen_centroids is not None
    frozen = load_frozen_habitats(models, profile.habitats.frozen_centroids)
    result = build_regions(phases, tumour, profile, frozen)
    assert result.habitats is not None and result.habitats.k == 3 and all(result.habitats.valid)
    return {s.region: {"count": s.voxel_count, **s.mean_values} for s in result.statistics}


def test_frozen_mode_labels_a_tumour_with_k_habitats_in_perfusion_order(
    cohort: tuple[Path, Path], fitted: HabitatFitReport
) -> None:
    profile = RegionProfile.model_validate({"habitats": fitted.habitats})
    for case in ("case_0002", "case_0000"):  # the validation patient and a training patient
        stats = _regions_of(cohort[0] / case, profile, _root(fitted))
        for parameter in ("PE", "SER"):
            means = [stats[f"habitat_{k}"][parameter] for k in (1, 2, 3)]
            assert means[0] < means[1] < means[2], (case, parameter, means)
        assert sum(stats[f"habitat_{k}"]["count"] for k in (1, 2, 3)) == stats["tumour"]["count"]


def test_extract_with_a_frozen_profile_then_the_table_holds_the_frozen_habitats(
    cohort: tuple[Path, Path], fitted: HabitatFitReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = {
        "region_profile": {"habitats": fitted.habitats},
        "feature_settings": {"featureClass": {"firstorder": ["Mean"]}},
        "regions": ["habitat_1", "habitat_2", "habitat_3"],
        "images": ["PE"],
        "msi": False,
        "stats": ["fraction", "mean_PE"],
    }
    (tmp_path / "frozen.json").write_text(json.dumps(document))
    plan = load_plan(tmp_path / "frozen.json")
    out = tmp_path / "features.parquet"
    config = ExtractConfig(out=out, workers=1, progress=False, segmentation=SegmentationOptions(_root(fitted)))
    report = run_extraction(cohort[1], plan, config)
    assert report.failures == () and report.computed == 3
    frame = pd.read_parquet(out)
    fractions = frame[[f"habitat_{k}/stats/fraction" for k in (1, 2, 3)]].to_numpy(float)
    np.testing.assert_allclose(fractions.sum(axis=1), 1.0)
    means = frame[[f"habitat_{k}/stats/mean_PE" for k in (1, 2, 3)]].to_numpy(float)
    assert (np.diff(means, axis=1) > 0).all(), means
    stats = _regions_of(cohort[0] / "case_0002", RegionProfile.model_validate(plan.region_profile), _root(fitted))
    expected = [stats[f"habitat_{k}"]["count"] / stats["tumour"]["count"] for k in (1, 2, 3)]
    np.testing.assert_allclose(fractions[2], expected)
    # the extract command checks the centroids before any patient runs: no models root -> exit 2
    argv = ["extract", str(cohort[1]), "--plan", str(tmp_path / "frozen.json"), "--out", str(tmp_path / "x.parquet")]
    assert main([*argv, "--workers", "1", "--no-progress"]) == 2
    assert "CENTROIDS_UNAVAILABLE" in capsys.readouterr().err


def test_unusable_settings_are_refused_before_any_patient_runs(
    cohort: tuple[Path, Path], fitted: HabitatFitReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(voxel_step, "patient_voxels", lambda task: pytest.fail("no patient may run"))
    chosen_k = RegionProfile.model_validate({"habitats": {"k": None, "k_range": [2, 4]}})
    with pytest.raises(HabitatFitError, match="fixed K"):
        fit_cohort_habitats(cohort[1], chosen_k, _config(tmp_path))
    off = RegionProfile.model_validate({"habitats": {"enabled": False}, "msi": {"enabled": False}})
    with pytest.raises(HabitatFitError, match="disabled"):
        fit_cohort_habitats(cohort[1], off, _config(tmp_path))
    bad_id = HabitatFitConfig(out=tmp_path, bundle_id="Not An Id", version="1.0.0", workers=1)
    with pytest.raises(HabitatFitError, match="bundle manifest"):
        fit_cohort_habitats(cohort[1], RegionProfile(), bad_id)
    # a root whose pinned bundles no longer match the lock is not re-locked over
    root = tmp_path / "tampered"
    for relative, content in _files(_root(fitted)).items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content)
    manifest = root / KEY / "manifest.json"
    manifest.write_text(manifest.read_text().replace("Population", "Edited"))
    other = HabitatFitConfig(out=root, bundle_id="other", version="1.0.0", workers=1)
    with pytest.raises(HabitatFitError, match="no longer matches"):
        fit_cohort_habitats(cohort[1], RegionProfile(), other)

"""``extract`` on a tiny phantom cohort: canonical columns, values equal to the engine run directly on a study,
and the same table from local worker processes and a Dask LocalCluster (this-process runs: the resume tests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import SimpleITK as sitk

from oncohabitat.bundles.canonical import parse_canonical_name
from oncohabitat.bundles.plan import ExtractionPlan
from oncohabitat.common.volume import Geometry, Volume
from oncohabitat.dicomio import RoiSelection
from oncohabitat.features.full import full_row
from oncohabitat.features.study import LabelTable, StudyInputs, canonical_regions
from oncohabitat.orchestrator.feature_stages import regions_profile
from oncohabitat.orchestrator.study_loading import load_study
from oncohabitat.phantom.cohort import generate_cohort
from oncohabitat.regions import PhaseInput, build_regions, parse_profile, select_phases
from oncohabitat.regions.grid import map_mask_to_grid
from oncohabitat_training.cohorts import load_cohort
from oncohabitat_training.cohorts.phantom import write_phantom_cohort_file
from oncohabitat_training.extraction.patient import PatientTask, extract_patient
from oncohabitat_training.extraction.profile import DCE_DEFAULT, load_plan
from oncohabitat_training.extraction.run import ExtractConfig, run_extraction
from oncohabitat_training.extraction.table import read_plan

SMALL_PROFILE = {
    "feature_settings": {"setting": {"binCount": 16}, "featureClass": {"firstorder": None, "glcm": ["Contrast"]}},
    "regions": ["tumour", "habitat_1", "ring_5mm"],
    "images": ["S1", "PE"],
    "stats": ["volume_ml", "fraction", "mean_PE"],
}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("phantom") / "cohort"
    generate_cohort(root, 3, "small", seed=7)
    return root, write_phantom_cohort_file(root, validation_fraction=0.34)


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> ExtractionPlan:
    path = tmp_path_factory.mktemp("plan") / "profile.json"
    path.write_text(json.dumps(SMALL_PROFILE))
    return load_plan(path)


@pytest.fixture(scope="module")
def local_table(cohort: tuple[Path, Path], plan: ExtractionPlan, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local run: two worker processes."""
    out = tmp_path_factory.mktemp("local") / "features.parquet"
    report = run_extraction(cohort[1], plan, ExtractConfig(out=out, workers=2, progress=False))
    assert report.failures == () and report.computed == 3 and report.table == out
    return out


def _engine_row(case: Path, plan: ExtractionPlan) -> dict[str, float]:
    """The engine run directly on one study: load, supplied mask, regions, the features stage's inputs."""
    study = load_study(sorted(p for p in (case / "dicom").rglob("*") if p.is_file()), RoiSelection())
    phases = [
        PhaseInput(
            "pre" if p.pre_contrast else "post",
            p.index,
            p.time_from_pre_s,
            sitk.GetArrayFromImage(p.image),
            Geometry.of(p.image),
        )
        for p in study.phases
    ]
    phase_set = select_phases(phases)
    mask = sitk.ReadImage(str(case / "ground_truth" / "tumour_mask.nrrd"))
    tumour = map_mask_to_grid(sitk.GetArrayFromImage(mask), Geometry.of(mask), phase_set.shape, phase_set.geometry)
    regions = build_regions(phase_set, tumour, parse_profile(json.dumps(regions_profile(plan))))
    grid = regions.geometry
    images = {f"S{p.index}": Volume(p.array, p.geometry) for p in phases}
    images |= {name: Volume(array, grid) for name, array in regions.derived_images.items()}
    tables = [LabelTable(m.array.astype(np.int64), grid, {e.value: e.name for e in m.labels}) for m in regions.maps]
    inputs = StudyInputs(
        images=images,
        regions=canonical_regions(tables),
        msi=dict(regions.msi_features),
        parenchyma_mean=regions.parenchyma_s0_mean,
    )
    return full_row(plan, inputs)[0]


def test_table_has_canonical_columns_and_the_engine_values(
    cohort: tuple[Path, Path], plan: ExtractionPlan, local_table: Path
) -> None:
    frame = pd.read_parquet(local_table)
    outcomes = ["time", "event", "pcr", "target", "lp", "high_risk"]  # the phantom cohort file's, in schema order
    fixed = ["patient_id", "split", *(f"outcome.{name}" for name in outcomes), "clinical.age"]
    assert list(frame.columns) == fixed + list(plan.features)
    for name in plan.features:
        parse_canonical_name(name)
    assert "tumour/msi/msi_contrast" in plan.features and "habitat_1/stats/fraction" in plan.features
    assert list(frame["patient_id"]) == ["case_0000", "case_0001", "case_0002"]
    assert list(frame["split"]) == ["train", "train", "validation"]
    clinical = pd.read_csv(cohort[0] / "clinical.csv")
    np.testing.assert_array_equal(frame["outcome.time"], clinical["time_months"])
    np.testing.assert_array_equal(frame["clinical.age"], clinical["age"].astype(float))
    direct = _engine_row(cohort[0] / "case_0001", plan)
    np.testing.assert_array_equal(frame.loc[1, list(plan.features)].to_numpy(float), [direct[n] for n in plan.features])
    assert frame[list(plan.features)].notna().all().all()
    assert read_plan(local_table) == plan


def test_dask_gives_the_same_table_as_local_processes(
    cohort: tuple[Path, Path], plan: ExtractionPlan, local_table: Path, tmp_path: Path
) -> None:
    from distributed import LocalCluster

    expected = pq.read_table(local_table)
    with LocalCluster(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        on_dask = run_extraction(
            cohort[1],
            plan,
            ExtractConfig(out=tmp_path / "dask.parquet", scheduler=cluster.scheduler_address, progress=False),
        )
    assert on_dask.computed == 3 and on_dask.failures == ()
    assert pq.read_table(tmp_path / "dask.parquet").equals(expected)


def test_dce_default_profile_names() -> None:
    default = DCE_DEFAULT.plan()
    regions = {parse_canonical_name(name).region for name in default.features}
    images = {parse_canonical_name(name).image for name in default.features}
    assert regions == {"tumour", "habitat_1", "habitat_2", "habitat_3", "ring_5mm", "stroma_20mm"}
    assert images == {"S0", "S1", "SM0", "SL0", "PE", "SER", "msi", "stats"}
    assert sum(name.startswith("tumour/msi/") for name in default.features) == 22
    assert "tumour/S0/original_shape_Sphericity" in default.features
    assert "tumour/S1/original_shape_Sphericity" not in default.features  # shape once per region
    assert load_plan("dce-default") == default


def test_nifti_phases_give_the_dicom_values(
    cohort: tuple[Path, Path], plan: ExtractionPlan, local_table: Path, tmp_path: Path
) -> None:
    case = cohort[0] / "case_0001"
    study = load_study(sorted(p for p in (case / "dicom").rglob("*") if p.is_file()), RoiSelection())
    names, times = [], []
    for phase in study.phases:
        sitk.WriteImage(phase.image, str(tmp_path / f"phase{phase.index}.nii.gz"))
        names.append(f"phase{phase.index}.nii.gz")
        times.append(phase.time_from_pre_s)
    mask = str(case / "ground_truth" / "tumour_mask.nrrd")
    entry = {"patient_id": "n1", "image": {"nifti": names, "times_s": times}, "mask": mask, "split": "external"}
    (tmp_path / "cohort.yaml").write_text(json.dumps({"patients": [entry]}))  # JSON is YAML
    (patient,) = load_cohort(tmp_path / "cohort.yaml").patients
    result = extract_patient(PatientTask(0, patient, plan))
    assert result.failure is None and result.method == "supplied" and result.features is not None
    expected = pd.read_parquet(local_table).loc[1, list(plan.features)].to_numpy(float)
    np.testing.assert_array_equal([result.features[name] for name in plan.features], expected)

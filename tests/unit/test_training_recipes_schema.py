"""Recipe files: every shipped recipe validates; unknown keys, unknown features and covariates outside their
declared categories are refused with messages naming them; ``oncohabitat-train fit`` end to end."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from oncohabitat_training.cli import main
from oncohabitat_training.fitting.run import fit_only
from oncohabitat_training.fitting.schema import RecipeError, load_recipe
from oncohabitat_training.fitting.table import TableError
from tests.unit.test_training_recipes_support import COX, LOGISTIC, synthetic_table, write_recipe, write_table

RECIPES = Path(__file__).resolve().parents[2] / "training" / "oncohabitat_training" / "recipes"
SHIPPED = sorted(RECIPES.glob("*.yaml")) + sorted(RECIPES.glob("demo/*.yaml"))


def test_recipes_are_shipped() -> None:
    assert len(SHIPPED) >= 8


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_recipe_validates(path: Path) -> None:
    recipe, plan, raw = load_recipe(path)
    assert raw and plan.features
    if path.parent.name == "demo":
        assert recipe.demonstration


def test_unknown_key_is_refused_naming_it(tmp_path: Path) -> None:
    document = copy.deepcopy(COX)
    document["model"]["lamda"] = 0.1
    with pytest.raises(RecipeError, match="lamda"):
        load_recipe(write_recipe(tmp_path / "r.yaml", document))
    with pytest.raises(RecipeError, match="colour"):
        load_recipe(write_recipe(tmp_path / "r.yaml", COX | {"colour": "red"}))


def test_unknown_feature_in_recipe_is_named(tmp_path: Path) -> None:
    unknown = "tumour/S1/original_glcm_Contrast"
    with pytest.raises(RecipeError, match=f"unknown feature '{unknown}'"):
        load_recipe(
            write_recipe(tmp_path / "r.yaml", COX | {"features": ["tumour/SER/original_firstorder_Mean", unknown]})
        )


def test_malformed_feature_name_in_plan_is_named(tmp_path: Path) -> None:
    document = copy.deepcopy(COX)
    document["extraction"]["plan"]["features"] = ["tumour/SER/original_firstorder_Mean", "tumor/S1/x_y_z"]
    with pytest.raises(RecipeError, match="tumor"):
        load_recipe(write_recipe(tmp_path / "r.yaml", document))


def test_plan_feature_missing_from_table_is_named(tmp_path: Path) -> None:
    frame = synthetic_table(60).drop(columns=["habitat_1/S1/original_firstorder_Skewness"])
    table = write_table(tmp_path / "t.parquet", frame)
    with pytest.raises(TableError, match="habitat_1/S1/original_firstorder_Skewness"):
        fit_only(write_recipe(tmp_path / "r.yaml", COX), table)


def test_covariate_outside_its_categories_is_named_with_patient_and_row(tmp_path: Path) -> None:
    frame = synthetic_table(60)
    frame.loc[7, "clinical.grade"] = "G4"
    table = write_table(tmp_path / "t.parquet", frame)
    covariates = [{"name": "grade", "type": "categorical", "categories": ["G1", "G2", "G3"], "reference": "G1"}]
    recipe = write_recipe(tmp_path / "r.yaml", LOGISTIC | {"covariates": covariates})
    with pytest.raises(TableError, match=r"covariate 'grade', patient 'P0007' \(row 7\): category 'G4'"):
        fit_only(recipe, table)


def test_numeric_covariate_outside_valid_range_is_named(tmp_path: Path) -> None:
    frame = synthetic_table(60)
    frame.loc[3, "clinical.age"] = 140.0
    table = write_table(tmp_path / "t.parquet", frame)
    covariates = [{"name": "age", "type": "numeric", "valid_range": [18, 100]}]
    with pytest.raises(TableError, match=r"covariate 'age', patient 'P0003' \(row 3\)"):
        fit_only(write_recipe(tmp_path / "r.yaml", COX | {"covariates": covariates}), table)


def test_model_and_outcome_must_agree(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="needs a survival outcome"):
        load_recipe(write_recipe(tmp_path / "r.yaml", COX | {"outcome": {"type": "binary", "column": "pcr"}}))


def test_fit_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = write_table(tmp_path / "t.parquet")
    recipe = write_recipe(tmp_path / "r.yaml", COX)
    assert main(["fit", str(recipe), "--features", str(table), "--out", str(tmp_path / "models")]) == 0
    out = capsys.readouterr().out
    assert "test-cox 1.0.0 written" in out and "harrell_c_index" in out
    assert (tmp_path / "models" / "scoring" / "test-cox" / "1.0.0" / "manifest.json").exists()
    bad = write_recipe(tmp_path / "bad.yaml", COX | {"features": ["tumour/S9/original_firstorder_Mean"]})
    assert main(["fit", str(bad), "--features", str(table), "--out", str(tmp_path / "models")]) == 1
    assert "tumour/S9/original_firstorder_Mean" in capsys.readouterr().err


def test_table_extracted_with_other_settings_is_refused(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from oncohabitat.bundles.plan import ExtractionPlan

    other = ExtractionPlan.model_validate(
        COX["extraction"]["plan"] | {"feature_settings": {"setting": {"binCount": 8}}}
    )
    table = pa.Table.from_pandas(synthetic_table(60), preserve_index=False)
    metadata = {b"oncohabitat.plan": other.model_dump_json(by_alias=True).encode()}
    pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata}), tmp_path / "t.parquet")
    with pytest.raises(TableError, match="feature_settings"):
        fit_only(write_recipe(tmp_path / "r.yaml", COX), tmp_path / "t.parquet")
    same = ExtractionPlan.model_validate(COX["extraction"]["plan"])
    metadata = {b"oncohabitat.plan": same.model_dump_json(by_alias=True).encode()}
    pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata}), tmp_path / "t.parquet")
    assert fit_only(write_recipe(tmp_path / "r.yaml", COX), tmp_path / "t.parquet").fit.primary.features

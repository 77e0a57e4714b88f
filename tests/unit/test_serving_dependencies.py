"""Serving code never imports training-only dependencies (torch; scikit-survival is GPL) and scoring never
unpickles a model nor imports scikit-learn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SERVICE_MODULES = [
    "oncohabitat.cli",
    "oncohabitat.listener.__main__",
    "oncohabitat.orchestrator.__main__",
    "oncohabitat.segmentation.__main__",
    "oncohabitat.regions.__main__",
    "oncohabitat.features.__main__",
    "oncohabitat.scoring.__main__",
]
TRAINING_ONLY = ["torch", "sksurv", "onnx", "oncohabitat_training"]


def test_service_entry_points_import_no_training_dependency() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {SERVICE_MODULES!r}: importlib.import_module(name)\n"
        f"print(sorted(m for m in {TRAINING_ONLY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_pyproject_keeps_training_dependencies_out_of_the_service_distribution() -> None:
    from tests.conftest import PROJECT_ROOT

    text = (PROJECT_ROOT / "pyproject.toml").read_text().lower()
    assert "torch" not in text and "scikit-survival" not in text


SCORING_FORBIDDEN = ["sklearn", "sksurv", "skl2onnx", "onnx", "torch", "joblib", "oncohabitat_training"]


def test_scoring_runs_an_onnx_forest_without_training_libraries_or_unpickling(tmp_path: Path) -> None:
    pytest.importorskip("skl2onnx")
    import numpy as np

    from oncohabitat.bundles import write_lock
    from oncohabitat_training.scoring_export import write_sklearn_bundle
    from tests.unit.test_scoring_onnx import fitted_forest, forest_manifest, random_inputs

    root = tmp_path / "models"
    write_sklearn_bundle(root, forest_manifest("upper"), fitted_forest(), random_inputs(np.random.default_rng(0), 50))
    write_lock(root)
    code = (
        "import pickle, sys\n"
        "def refuse(*a, **k): raise AssertionError('unpickling in serving')\n"
        "pickle.load = pickle.loads = pickle.Unpickler = refuse\n"
        "from pathlib import Path\n"
        "from oncohabitat.scoring.live import LiveRegistry\n"
        "from oncohabitat.scoring import score\n"
        f"snapshot = LiveRegistry(Path({str(root)!r})).reload(strict=True)\n"
        "compiled = snapshot.get('rf-demo')\n"
        "features = dict.fromkeys(compiled.manifest.feature_keys, 1.0)\n"
        "print(score(compiled, features).probability is not None)\n"
        f"print(sorted(m for m in {SCORING_FORBIDDEN!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["True", "[]"]

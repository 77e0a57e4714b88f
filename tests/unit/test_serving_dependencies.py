"""Serving code never imports training-only dependencies (torch; scikit-survival is GPL)."""

from __future__ import annotations

import subprocess
import sys

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

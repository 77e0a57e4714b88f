"""Each service image carries only what its service imports (deploy/README.md, pyproject.toml extras).

Scoring and the listener do not install SimpleITK (264 MB), OpenCV (173 MB, through rt-utils) nor highdicom:
their entry points, the health probe and the listener's completion check (DCE classification with its
header-only phase-geometry check) must run without them. Each check runs in a fresh interpreter where
importing one of those modules fails, as it would in the image.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from oncohabitat.phantom import generate_study
from tests.conftest import PROJECT_ROOT

HEAVY = ("SimpleITK", "cv2", "highdicom", "rt_utils", "scipy")

# a finder that refuses the modules an image does not carry (ImportError as where they are not installed)
BLOCK = """
import sys
class _Absent:
    def __init__(self, names): self.names = set(names)
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r} (not in this image)", name=name)
        return None
sys.meta_path.insert(0, _Absent(ABSENT))
"""


def run_without(absent: tuple[str, ...], body: str) -> str:
    code = f"ABSENT = {absent!r}\n{BLOCK}\n{body}\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_scoring_entry_point_loads_neither_simpleitk_nor_opencv() -> None:
    body = (
        "import oncohabitat.scoring.__main__, oncohabitat.common.health_client\n"
        "from oncohabitat.common.provenance import component_versions\n"
        "component_versions()\n"
    )
    assert run_without(("SimpleITK", "cv2", "highdicom", "rt_utils", "scipy", "PIL"), body) == "[]"


def test_component_versions_name_simpleitk_only_where_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    # the orchestrator merges scoring's components over the features stage's: scoring (no SimpleITK) must not
    # report it as "not-installed" over the version the features stage used
    from oncohabitat.common import provenance

    assert {c.name: c.version for c in provenance.component_versions()}["SimpleITK"] == metadata.version("SimpleITK")

    def absent(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(provenance.metadata, "version", absent)
    assert "SimpleITK" not in {c.name for c in provenance.component_versions()}


def test_listener_entry_point_loads_neither_simpleitk_opencv_nor_highdicom() -> None:
    body = "import oncohabitat.listener.__main__, oncohabitat.common.health_client\n"
    assert run_without(("SimpleITK", "cv2", "highdicom", "rt_utils"), body) == "[]"


@pytest.fixture(scope="module")
def dce_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_study(tmp_path_factory.mktemp("dce") / "s", size="small", seed=3).dicom_dir


def test_listener_classifies_a_dce_study_without_simpleitk_opencv_or_highdicom(dce_study: Path) -> None:
    body = (
        "from pathlib import Path\n"
        "from oncohabitat.dicomio.dce import classify_study_files\n"
        f"result = classify_study_files(sorted(Path({str(dce_study)!r}).rglob('*.dcm')))\n"
        "assert result.eligible, result.reason_code\n"
        "import oncohabitat.dicomio.phases  # the geometry check ran\n"
    )
    assert run_without(("SimpleITK", "cv2", "highdicom", "rt_utils"), body) == "[]"


def test_the_package_namespace_still_offers_its_names_lazily() -> None:
    body = (
        "import oncohabitat.dicomio as d\n"
        "assert 'oncohabitat.dicomio.masks' not in sys.modules\n"
        "assert set(d.__all__) == set(d._EXPORTS) and set(d.__all__) <= set(dir(d))\n"
        "from oncohabitat.dicomio import RoiSelection, load_series, load_mask\n"
        "assert load_series.__module__ == 'oncohabitat.dicomio.series'\n"
    )
    # here everything is installed: the names resolve (and load their modules) on first use
    assert run_without((), body) == "['SimpleITK', 'cv2', 'highdicom', 'rt_utils']"


def test_extras_keep_the_heavy_distributions_out_of_scoring_and_the_listener() -> None:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]

    def closure(names: list[str]) -> set[str]:
        out: set[str] = set()
        for requirement in names:
            if requirement.startswith("oncohabitat["):
                for extra in requirement[len("oncohabitat[") : -1].split(","):
                    out |= closure(extras[extra])
            else:
                out.add(requirement.split("==")[0].split("[")[0].lower())
        return out

    core = closure(project["dependencies"])
    assert "simpleitk" not in core
    assert not closure(extras["scoring"]) & {"simpleitk", "opencv-python", "rt-utils", "scipy", "highdicom"}
    assert not closure(extras["listener"]) & {"simpleitk", "opencv-python", "rt-utils", "highdicom"}
    for service in ("segmentation", "regions", "features", "orchestrator", "phantom"):
        assert "simpleitk" in closure(extras[service]), service
    assert {"highdicom", "rt-utils"} <= closure(extras["orchestrator"])

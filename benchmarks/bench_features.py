"""The plan engine on an I-SPY-sized phantom (256 x 256 x 60, 4 phases) against plain pyradiomics.

(a) ``needed``: the features a seed-001-style DCE plan needs (habitat and ring features on PE / SER / WIS / SM0,
kinetic statistics of tumour features over S0..S3, MSI, a habitat fraction) through the engine (worker pool, one
worker per core) vs the naive way: one pyradiomics extractor with every class enabled, run on the uncropped
images for every region x image the plan names (including each phase of the kinetic curves).
(b) ``full``: full-extraction mode (every feature of 5 regions x {S0, SM0, PE} x {Original, Wavelet, LoG} x all
classes; S0 on the whole 256 x 256 x 60 grid, the derived images on the regions service's crop grid)
vs a single-process loop of default pyradiomics ``execute`` over the same regions x images with the same filters.
(c) peak RSS of every run (each runs in a fresh process; the engine's figure adds its largest worker).

Values are compared name by name: ``max_relative_difference`` over both comparisons. The worker pool is started
before timing (a server keeps it warm). Phantom generation and BuildRegions are not timed.
"""

from __future__ import annotations

import json
import math
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.runner import Measurement, register, summary_line

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SETTINGS: dict[str, Any] = {"setting": {"binCount": 32}}
NEEDED_FEATURES = [
    "habitat_1/PE/original_firstorder_Mean",
    "habitat_2/SER/original_glcm_Idmn",
    "habitat_3/WIS/original_glszm_ZoneEntropy",
    "habitat_2/PE/original_glrlm_RunEntropy",
    "habitat_3/SER/original_firstorder_Skewness",
    "ring_5mm/PE/original_glcm_Correlation",
    "ring_5mm/SM0/original_firstorder_Kurtosis",
    *[
        f"tumour/kinetic-{stat}/original_{feature}"
        for feature in ("firstorder_Entropy", "firstorder_Variance", "glcm_Contrast", "glcm_JointEntropy")
        for stat in ("mean", "variance", "skewness", "kurtosis")
    ],
    "tumour/kinetic-mean/original_glszm_SizeZoneNonUniformity",
    "tumour/kinetic-variance/original_glszm_SizeZoneNonUniformity",
    "tumour/msi/msi_contrast",
    "tumour/msi/msi_energy",
    "habitat_1/stats/fraction",
]
FULL_REGIONS = ["tumour", "habitat_1", "habitat_2", "habitat_3", "ring_5mm"]
FULL_IMAGES = ["S0", "SM0", "PE"]
FULL_SETTINGS: dict[str, Any] = {
    "setting": {"binCount": 32},
    "imageType": {"Original": {}, "Wavelet": {}, "LoG": {"sigma": [2.0]}},
}


def _peak_mib() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own + children


def _naive(inputs: Any, pairs: list[tuple[str, str]], params: dict[str, Any]) -> dict[str, float]:
    """Plain pyradiomics execute per (region, image), uncropped, in this process."""
    import logging

    import SimpleITK as sitk
    from radiomics import featureextractor

    from oncohabitat.features.study import region_on_grid

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    values: dict[str, float] = {}
    for region, image_name in pairs:
        image = inputs.images[image_name]
        placed = region_on_grid(inputs.regions[region], image.geometry, image.array.shape)
        if placed is None:
            continue
        sitk_image = image.geometry.apply(sitk.GetImageFromArray(image.array))
        mask = sitk.GetImageFromArray(placed.full(image.array.shape).astype(np.uint8))
        mask.CopyInformation(sitk_image)
        extractor = featureextractor.RadiomicsFeatureExtractor(params)
        for key, value in extractor.execute(sitk_image, mask, label=1).items():
            if not key.startswith("diagnostics"):
                values[f"{region}/{image_name}/{key}"] = float(value)
    return values


def worker_main(inputs_path: str, mode: str) -> None:
    """One timed run in a fresh process; prints JSON (seconds, peak MiB, values)."""
    from oncohabitat.bundles.feature_settings import FeatureSettings
    from oncohabitat.bundles.plan import ExtractionPlan
    from oncohabitat.features.engine import extract_plan
    from oncohabitat.features.full import full_plan, full_row
    from oncohabitat.features.pool import PoolRunner

    inputs = pickle.loads(Path(inputs_path).read_bytes())
    phases = inputs.phases()
    needed = ExtractionPlan.model_validate({"features": NEEDED_FEATURES, "feature_settings": SETTINGS})
    full = full_plan(FeatureSettings.model_validate(FULL_SETTINGS), FULL_REGIONS, FULL_IMAGES)
    runner = PoolRunner()
    if mode in ("needed", "full"):
        runner.warm()  # start every worker (a server does so when it starts)
    started = time.perf_counter()
    if mode == "needed":
        values = extract_plan(needed, inputs, runner).values
    elif mode == "full":
        row, _ = full_row(full, inputs, runner)
        values = row
    elif mode == "naive_needed":
        regions = sorted({p.region for p in needed.parsed_features() if p.family in ("radiomics", "kinetic")})
        images = sorted({p.image for p in needed.parsed_features() if p.family == "radiomics"} | set(phases))
        params = {**SETTINGS, "featureClass": {}}
        values = _naive(inputs, [(r, i) for r in regions for i in images], params)
    else:
        params = {**FULL_SETTINGS, "featureClass": {}}
        values = _naive(inputs, [(r, i) for r in FULL_REGIONS for i in FULL_IMAGES], params)
    seconds = time.perf_counter() - started
    runner.close()
    print(json.dumps({"seconds": seconds, "peak_mib": _peak_mib(), "values": values}))


def _inputs(out_dir: Path) -> Any:
    from oncohabitat.common.phases import select_phases
    from oncohabitat.common.volume import Volume
    from oncohabitat.features.study import LabelTable, StudyInputs, canonical_regions
    from oncohabitat.regions.pipeline import build_regions
    from oncohabitat.regions.profile import RegionProfile
    from tests.unit.test_regions_phantom_support import load_phantom

    phantom = load_phantom(out_dir, "ispy", seed=0)
    profile = RegionProfile.model_validate({"derived_images": ["SM0", "SL0", "M1", "M2", "PE", "SER", "WIS", "WOS"]})
    result = build_regions(select_phases(phantom.phases), phantom.tumour, profile)
    images = {f"S{phase.index}": Volume(phase.array, phase.geometry) for phase in phantom.phases}
    grid = result.geometry
    images.update({name: Volume(array, grid) for name, array in result.derived_images.items()})
    tables = [LabelTable(m.array, grid, {e.value: e.name for e in m.labels}) for m in result.maps]
    return StudyInputs(images, canonical_regions(tables), dict(result.msi_features), {}, result.parenchyma_s0_mean)


def _run(path: Path, mode: str) -> dict[str, Any]:
    code = f"from benchmarks.bench_features import worker_main; worker_main({str(path)!r}, {mode!r})"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1800, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _max_difference(ours: dict[str, float], theirs: dict[str, float]) -> tuple[float, int]:
    worst, compared = 0.0, 0
    for name, value in ours.items():
        if name not in theirs:
            continue
        other = theirs[name]
        compared += 1
        if math.isnan(value) and math.isnan(other):
            continue
        if math.isnan(value) or math.isnan(other):
            worst = math.inf
            continue
        if value != other:
            worst = max(worst, abs(value - other) / max(abs(value), abs(other)))
    return worst, compared


@register("features")
def bench_features() -> list[Measurement]:
    """(a) needed features vs naive pyradiomics, (b) full extraction vs a pyradiomics loop, (c) peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        inputs = _inputs(Path(tmp) / "phantom")
        path = Path(tmp) / "inputs.pkl"
        path.write_bytes(pickle.dumps(inputs))
        print(f"ispy phantom, regions and derived images ready in {time.perf_counter() - started:.1f} s")
        runs = {mode: _run(path, mode) for mode in ("needed", "naive_needed", "full", "naive_full")}
    needed_worst, needed_compared = _max_difference(runs["needed"]["values"], runs["naive_needed"]["values"])
    full_worst, full_compared = _max_difference(runs["full"]["values"], runs["naive_full"]["values"])
    assert full_compared == len(runs["full"]["values"]), (
        "full extraction and the pyradiomics loop name different features"
    )
    needed_speedup = runs["naive_needed"]["seconds"] / runs["needed"]["seconds"]
    full_speedup = runs["naive_full"]["seconds"] / runs["full"]["seconds"]
    rows = [
        Measurement(
            "features",
            f"(a) needed plan, {len(NEEDED_FEATURES)} names",
            runs["needed"]["seconds"],
            "s",
            runs["naive_needed"]["seconds"],
            "pyradiomics, every class, every region x image, uncropped",
            ">= 20x faster",
        ),
        Measurement(
            "features",
            f"(b) full extraction, {len(runs['full']['values'])} values",
            runs["full"]["seconds"],
            "s",
            runs["naive_full"]["seconds"],
            "single-process loop of default pyradiomics",
            ">= 4x faster on 2 cores",
        ),
        Measurement(
            "features",
            f"values compared (a) {needed_compared}, (b) {full_compared}: max relative difference",
            max(needed_worst, full_worst),
            "",
            target="0 (bit-identical)",
        ),
    ]
    rows += [Measurement("features", f"(c) peak RSS {mode}", run["peak_mib"], "MiB") for mode, run in runs.items()]
    summary_line(
        {
            "needed_speedup": round(needed_speedup, 2),
            "full_speedup": round(full_speedup, 2),
            "max_relative_difference": max(needed_worst, full_worst),
            "peak_rss_mib": round(max(run["peak_mib"] for run in runs.values()), 1),
        }
    )
    return rows

"""Segmentation: Dice, time per study and peak memory on held-out phantom studies (ispy and duke sizes).

Each study is segmented in a fresh subprocess (so its peak RSS is the study's alone, imports included):
phantom DICOM -> SimpleITK -> Study message -> servicer.Segment (decode, segment, encode), once with the ONNX
demonstration model and once with seeded fuzzy c-means (seed = lesion centre jittered by up to 3 mm).
Held-out seeds (8001+) were never used in training (the demo model saw seeds 0-39).
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmarks.runner import Measurement, register

ISPY_SEEDS = (8001, 8002, 8003)
DUKE_SEED = 8101
MAX_SEED_JITTER_MM = 3.0


@dataclass(frozen=True)
class StudyRun:
    """What one worker measured (seconds, MiB, Dice)."""

    onnx_s: float
    onnx_peak_mib: float
    onnx_dice: float
    fcm_s: float
    fcm_dice: float


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float(np.logical_and(a, b).sum()) / float(a.sum() + b.sum())


def _worker(out_dir: str, size: str, seed: int) -> StudyRun:
    """Generate one study here, then segment it in a fresh subprocess (the measured one)."""
    from oncohabitat.phantom import generate_study

    phantom = generate_study(Path(out_dir) / f"{size}-{seed}", size=size, seed=seed)
    assert phantom.lesion is not None
    # the generator's memory must not count: the subprocess only loads the study and segments it
    finished = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_segmentation", str(phantom.out_dir), str(seed)],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
    )
    return StudyRun(**json.loads(finished.stdout.strip().splitlines()[-1]))


def _segment(study_dir: str, seed: int) -> StudyRun:
    """Load, ONNX-segment (timed, peak RSS), then seeded-FCM-segment (timed) one study (subprocess)."""
    import SimpleITK as sitk

    from oncohabitat.bundles.registry import default_bundle_root
    from oncohabitat.common.codec import VolumeCodec
    from oncohabitat.phantom.study import METADATA_NAME
    from oncohabitat.segmentation.segmenter import Segmenter
    from oncohabitat.segmentation.servicer import SegmentationServicer
    from oncohabitat.segmentation.study_message import build_study
    from oncohabitat.v1 import segmentation_pb2

    codec = VolumeCodec(None)
    models = default_bundle_root()
    servicer = SegmentationServicer(codec, Segmenter.load(models, models / "profiles.json"))
    metadata = json.loads((Path(study_dir) / METADATA_NAME).read_text())
    centre = metadata["lesion"]["centre_lps_mm"]
    phases = {
        k: sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(Path(study_dir) / series)))
        for k, series in enumerate(metadata["series_dirs"])
    }
    study = build_study(phases, codec)
    del phases
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(Path(study_dir) / "ground_truth" / "tumour_mask.nrrd"))) != 0

    started = time.perf_counter()
    response = servicer.Segment(segmentation_pb2.SegmentRequest(study=study), None)  # type: ignore[arg-type]
    onnx_s = time.perf_counter() - started
    onnx_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    onnx_dice = _dice(sitk.GetArrayFromImage(codec.decode_image(response.mask.volume)) != 0, truth)

    rng = np.random.default_rng(seed)
    direction = rng.normal(size=3)
    x, y, z = np.asarray(centre) + direction / np.linalg.norm(direction) * rng.uniform(0.0, MAX_SEED_JITTER_MM)
    request = segmentation_pb2.SegmentRequest(study=study, seed=segmentation_pb2.PointMm(x=x, y=y, z=z), has_seed=True)
    started = time.perf_counter()
    seeded = servicer.Segment(request, None)  # type: ignore[arg-type]
    fcm_s = time.perf_counter() - started
    fcm_dice = _dice(sitk.GetArrayFromImage(codec.decode_image(seeded.mask.volume)) != 0, truth)
    return StudyRun(onnx_s, onnx_peak, onnx_dice, fcm_s, fcm_dice)


@register("segmentation")
def bench_segmentation() -> list[Measurement]:
    """ONNX and seeded-FCM Dice, time per study and peak RSS on ispy- and duke-sized held-out phantoms."""
    with tempfile.TemporaryDirectory(prefix="bench-seg-") as tmp:
        ispy = [_worker(tmp, "ispy", seed) for seed in ISPY_SEEDS]
        duke = _worker(tmp, "duke", DUKE_SEED)
    name = "segmentation"
    return [
        Measurement(
            name,
            f"ispy ONNX Dice, mean of {len(ispy)}",
            statistics.mean(r.onnx_dice for r in ispy),
            "",
            target=">= 0.85",
        ),
        Measurement(name, "ispy ONNX Dice, worst", min(r.onnx_dice for r in ispy), "", target=">= 0.85"),
        Measurement(
            name,
            f"ispy seeded-FCM Dice, mean of {len(ispy)}",
            statistics.mean(r.fcm_dice for r in ispy),
            "",
            target=">= 0.85",
        ),
        Measurement(name, "ispy seeded-FCM Dice, worst", min(r.fcm_dice for r in ispy), "", target=">= 0.85"),
        Measurement(
            name, "ispy ONNX time per study (median)", statistics.median(r.onnx_s for r in ispy), "s", target="<= 5 s"
        ),
        Measurement(name, "ispy ONNX peak RSS (max)", max(r.onnx_peak_mib for r in ispy), "MiB", target="<= 2048 MiB"),
        Measurement(name, "ispy seeded-FCM time per study (median)", statistics.median(r.fcm_s for r in ispy), "s"),
        Measurement(name, "duke ONNX Dice", duke.onnx_dice, "", target=">= 0.85"),
        Measurement(name, "duke seeded-FCM Dice", duke.fcm_dice, "", target=">= 0.85"),
        Measurement(name, "duke ONNX time per study", duke.onnx_s, "s", target="<= 30 s"),
        Measurement(name, "duke ONNX peak RSS", duke.onnx_peak_mib, "MiB", target="<= 4096 MiB"),
        Measurement(name, "duke seeded-FCM time per study", duke.fcm_s, "s"),
    ]


if __name__ == "__main__":  # the measured subprocess: ``python -m benchmarks.bench_segmentation DIR SEED``
    print(json.dumps(asdict(_segment(sys.argv[1], int(sys.argv[2])))))

"""BuildRegions on an I-SPY-sized phantom (256 x 256 x 60, 4 phases) vs a plain numpy pass over the same arrays.

The phantom is generated in a temporary directory and turned into a BuildRegionsRequest (phases inline).
The measurement runs in a fresh worker process (``python -c``) so that its peak RSS is BuildRegions' own
(imports and the parsed request included), not the phantom generator's. Targets: <= 2 s and <= 1 GiB on 2 cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

import grpc
import numpy as np
import SimpleITK as sitk

from benchmarks.runner import Measurement, best_of, peak_rss_mib, register
from oncohabitat.common.codec import VolumeCodec
from oncohabitat.dicomio import load_series
from oncohabitat.phantom import generate_study
from oncohabitat.v1 import common_pb2, regions_pb2

REPEATS = 3
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _request(out_dir: Path) -> regions_pb2.BuildRegionsRequest:
    study = generate_study(out_dir, size="ispy", seed=0)
    codec = VolumeCodec(None)
    message = common_pb2.Study(study_key="bench", modality="MR")
    for index, files in enumerate(study.phase_files):
        image = load_series(files).image
        message.phases.add(
            role=common_pb2.PHASE_ROLE_PRE_CONTRAST if index == 0 else common_pb2.PHASE_ROLE_POST_CONTRAST,
            index=index,
            time_offset_s=study.phase_times_s[index],
            volume=codec.encode_image(image),
        )
    mask = sitk.ReadImage(str(study.ground_truth.tumour_mask))
    return regions_pb2.BuildRegionsRequest(
        study=message, tumour_mask=common_pb2.LabelMap(volume=codec.encode_image(mask)), profile_json="{}"
    )


def worker_main(request_path: str) -> None:
    """Worker process: time BuildRegions and the numpy baseline, print JSON with the process's peak RSS."""
    from oncohabitat.regions.servicer import RegionsServicer

    request = regions_pb2.BuildRegionsRequest.FromString(Path(request_path).read_bytes())
    servicer = RegionsServicer(VolumeCodec(None))
    context = cast(grpc.ServicerContext, None)  # the servicer never touches its context
    servicer.BuildRegions(request, context)  # warm-up (lazy imports, caches)
    seconds = best_of(REPEATS, lambda: servicer.BuildRegions(request, context))

    def numpy_pass() -> None:
        arrays = [VolumeCodec(None).decode_array(p.volume)[0].astype(np.float32) for p in request.study.phases]
        s0 = arrays[0]
        for post in arrays[1:]:
            np.divide(post - s0, s0, out=np.zeros_like(s0), where=s0 > 0)

    baseline = best_of(REPEATS, numpy_pass)
    print(json.dumps({"seconds": seconds, "baseline": baseline, "peak_mib": peak_rss_mib()}))


@register("regions")
def bench_regions() -> list[Measurement]:
    """Wall time and peak memory of BuildRegions (servicer, default seed-001 profile) on the ispy phantom."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        request = _request(Path(tmp) / "phantom")
        print(f"ispy phantom generated and loaded in {time.perf_counter() - started:.1f} s")
        path = Path(tmp) / "request.bin"
        path.write_bytes(request.SerializeToString())
        code = f"from benchmarks.bench_regions import worker_main; worker_main({str(path)!r})"
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600, check=True
        )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    label = "numpy: decode + cast + (Sk-S0)/S0 per phase, whole volume"
    return [
        Measurement(
            "regions", "BuildRegions ispy 256x256x60x4", result["seconds"], "s", result["baseline"], label, "<= 2 s"
        ),
        Measurement("regions", "peak RSS of the worker process", result["peak_mib"], "MiB", target="<= 1024 MiB"),
    ]

"""Scoring: Score latency over loopback gRPC (10,000 calls) with four bundles loaded, one of them ONNX.

Bundles: the shipped seed-003 signature (Cox lp + cutoff), a Cox nomogram with a covariate and 3/5-year
survival, a logistic model with a probability cutoff, and a 100-tree random forest exported to ONNX (written
here with scikit-learn + skl2onnx, the training environment). The scoring service runs as its own process
(``python -m oncohabitat.scoring``); one client thread sends 10,000 calls round-robin over the bundles
(latency percentiles), then four client threads send 10,000 more (throughput). Baseline: the same cases scored
in process by :func:`oncohabitat.scoring.score` (no gRPC). Target: p99 <= 2 ms.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from benchmarks.runner import Measurement, register, summary_line

ROOT = Path(__file__).resolve().parents[1]
CALLS = 10_000
WARMUP = 500
CLIENT_THREADS = 4


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _bundles(root: Path) -> list[tuple[str, dict[str, float], dict[str, Any]]]:
    """Write the four bundles and the lock; returns (model_id, features, covariates) per bundle."""
    from sklearn.ensemble import RandomForestClassifier

    from oncohabitat.bundles import write_lock, write_scoring_bundle
    from oncohabitat_training.scoring_export import write_sklearn_bundle
    from tests.unit.test_scoring_model import CASE, linear_document
    from tests.unit.test_scoring_onnx import forest_manifest, random_inputs
    from tests.unit.test_scoring_service import expected_nomogram, nomogram_document

    shutil.copytree(ROOT / "models" / "scoring", root / "scoring")
    write_scoring_bundle(
        root,
        nomogram_document(),
        [{"features": CASE, "covariates": {"ki67": 30.0}, "expected": expected_nomogram(30.0)}],
    )
    features = list(CASE)
    logistic = {"type": "logistic", "coefficients": dict(zip(features, [0.3, 2.5, -4.0, 0.0], strict=True))}
    groups = {"applies_to": "probability", "cutoffs": [0.31], "labels": ["non-pCR", "pCR"], "tie": "upper"}
    log_odds = 0.3 * CASE[features[0]] + 2.5 * CASE[features[1]] - 4.0 * CASE[features[2]]
    write_scoring_bundle(
        root,
        linear_document(logistic, id="logistic-demo", risk_groups=groups | {"direction": "higher_is_better"}),
        [{"features": CASE, "expected": {"probability": 1.0 / (1.0 + np.exp(-log_odds))}}],
    )
    rng = np.random.default_rng(4)
    x = random_inputs(rng, 500)
    y = ((x[:, 1] - x[:, 2] + 0.3 * rng.normal(size=500)) > 0.0).astype(int)
    forest = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=4).fit(x, y)
    write_sklearn_bundle(root, forest_manifest("upper"), forest, random_inputs(rng, 100))
    write_lock(root)
    return [
        ("seed003-ct-dfs", CASE, {}),
        ("nomogram", CASE, {"ki67": 30.0}),
        ("logistic-demo", CASE, {}),
        ("rf-demo", CASE, {}),
    ]


def _requests(cases: list[tuple[str, dict[str, float], dict[str, Any]]]) -> list[Any]:
    from oncohabitat.orchestrator.score_stage import covariates_to_proto
    from oncohabitat.v1 import scoring_pb2

    return [
        scoring_pb2.ScoreRequest(model_id=model, features=features, covariates=covariates_to_proto(covariates))
        for model, features, covariates in cases
    ]


def _in_process_baseline(root: Path, cases: list[tuple[str, dict[str, float], dict[str, Any]]]) -> list[float]:
    from oncohabitat.scoring import score
    from oncohabitat.scoring.live import LiveRegistry

    snapshot = LiveRegistry(root).reload(strict=True)
    compiled = [snapshot.get(model) for model, _, _ in cases]
    times = []
    for n in range(CALLS):
        index = n % len(cases)
        started = time.perf_counter()
        score(compiled[index], cases[index][1], cases[index][2])
        times.append(time.perf_counter() - started)
    return times


def _wait_serving(address: str, process: subprocess.Popen[bytes]) -> None:
    from oncohabitat.common.health_client import check_health

    deadline = time.monotonic() + 60
    while check_health(address, timeout_s=1.0) != "SERVING":
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the scoring service did not start")
        time.sleep(0.1)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


@register("scoring")
def bench_scoring() -> list[Measurement]:
    """Score latency (p50/p99) and calls/s over loopback with 4 bundles (one ONNX)."""
    from oncohabitat.v1 import scoring_pb2_grpc

    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as scratch:
        root = Path(scratch) / "models"
        cases = _bundles(root)
        baseline = _in_process_baseline(root, cases)
        port = _free_port()
        env = {
            **os.environ,
            "ONCOHABITAT_SCORING_MODELS_DIR": str(root),
            "ONCOHABITAT_SCORING_PORT": str(port),
            "ONCOHABITAT_SCORING_METRICS_PORT": str(_free_port()),
            "ONCOHABITAT_SCORING_DATA_DIR": str(Path(scratch) / "data"),
            "ONCOHABITAT_SCORING_HOST": "127.0.0.1",
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "oncohabitat.scoring"], env=env, cwd=ROOT, stderr=subprocess.DEVNULL
        )
        try:
            address = f"127.0.0.1:{port}"
            _wait_serving(address, process)
            channel = grpc.insecure_channel(address)
            stub = scoring_pb2_grpc.ScoringStub(channel)
            requests = _requests(cases)
            for n in range(WARMUP):
                stub.Score(requests[n % len(requests)], timeout=10)
            latencies = []
            started_all = time.perf_counter()
            for n in range(CALLS):
                started = time.perf_counter()
                stub.Score(requests[n % len(requests)], timeout=10)
                latencies.append(time.perf_counter() - started)
            sequential_s = time.perf_counter() - started_all

            def burst(offset: int) -> None:
                for n in range(offset, CALLS, CLIENT_THREADS):
                    stub.Score(requests[n % len(requests)], timeout=10)

            started_all = time.perf_counter()
            with ThreadPoolExecutor(CLIENT_THREADS) as pool:
                list(pool.map(burst, range(CLIENT_THREADS)))
            concurrent_s = time.perf_counter() - started_all
            channel.close()
        finally:
            process.terminate()
            process.wait(timeout=10)

    p50_ms = _percentile(latencies, 50) * 1e3
    p99_ms = _percentile(latencies, 99) * 1e3
    calls_per_s = CALLS / concurrent_s
    base_p50 = _percentile(baseline, 50) * 1e3
    summary_line({"p50_ms": round(p50_ms, 4), "p99_ms": round(p99_ms, 4), "calls_per_s": round(calls_per_s, 1)})
    label = "in-process score()"
    return [
        Measurement("scoring", "p50 latency (loopback gRPC)", p50_ms, "ms", base_p50, label),
        Measurement(
            "scoring", "p99 latency (loopback gRPC)", p99_ms, "ms", _percentile(baseline, 99) * 1e3, label, "<= 2 ms"
        ),
        Measurement("scoring", "mean latency", statistics.fmean(latencies) * 1e3, "ms"),
        Measurement("scoring", "calls/s, 1 client thread", CALLS / sequential_s, "calls/s"),
        Measurement("scoring", f"calls/s, {CLIENT_THREADS} client threads", calls_per_s, "calls/s"),
        Measurement("scoring", "cores available", float(len(os.sched_getaffinity(0))), "cores"),
    ]

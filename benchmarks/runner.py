"""Benchmark runner: every benchmark measures itself against a baseline run in the same process.

A benchmark is a function returning :class:`Measurement` rows; the runner prints one table and writes
``benchmarks/results/<timestamp>.json``. Ratios, not absolute times, are what targets are stated in: the
machines here are shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Measurement:
    """One measured quantity, optionally against a baseline measured in the same session."""

    benchmark: str
    metric: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    target: str = ""

    @property
    def ratio(self) -> float | None:
        """value / baseline (for throughput, > 1 is better; for times, < 1 is better)."""
        if self.baseline in (None, 0):
            return None
        return self.value / float(self.baseline)  # type: ignore[arg-type]


Benchmark = Callable[[], list[Measurement]]
REGISTRY: dict[str, Benchmark] = {}
#: One-line JSON summaries benchmarks ask to print after everything else (machine-readable last lines).
SUMMARIES: list[dict[str, float]] = []


def summary_line(values: dict[str, float]) -> None:
    """Print ``values`` as one JSON object after the table and the results path (the run's last line)."""
    SUMMARIES.append(values)


def register(name: str) -> Callable[[Benchmark], Benchmark]:
    """Decorator adding a benchmark to the registry under ``name``."""

    def add(function: Benchmark) -> Benchmark:
        REGISTRY[name] = function
        return function

    return add


def best_of(repeats: int, function: Callable[[], object]) -> float:
    """Median wall time in seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(names: list[str], out_dir: Path) -> list[Measurement]:
    """Run the named benchmarks (all when empty), print a table, write JSON."""
    import benchmarks.suite  # noqa: F401  (registers the benchmarks)

    selected = names or sorted(REGISTRY)
    unknown = [n for n in selected if n not in REGISTRY]
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(sorted(REGISTRY))}")
    rows: list[Measurement] = []
    for name in selected:
        rows.extend(REGISTRY[name]())
    table = Table(title="OncoHabitat benchmarks")
    for column in ("benchmark", "metric", "value", "unit", "baseline", "ratio", "target"):
        table.add_column(column)
    for row in rows:
        ratio = row.ratio
        table.add_row(
            row.benchmark,
            row.metric,
            f"{row.value:.4g}",
            row.unit,
            "" if row.baseline is None else f"{row.baseline:.4g} ({row.baseline_label})",
            "" if ratio is None else f"{ratio:.3f}x",
            row.target,
        )
    Console(width=200).print(table)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / time.strftime("%Y%m%dT%H%M%SZ.json", time.gmtime())
    payload = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "results": [asdict(r) | {"ratio": r.ratio} for r in rows],
    }
    path.write_text(json.dumps(payload, indent=2))
    print(f"results written to {path}")
    for summary in SUMMARIES:
        print(json.dumps(summary))
    return rows


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m benchmarks [--out DIR] [NAME ...]``."""
    parser = argparse.ArgumentParser(description="Run OncoHabitat benchmarks.")
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="JSON output folder")
    parser.add_argument("--list", action="store_true", help="list benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        import benchmarks.suite  # noqa: F401

        print("\n".join(sorted(REGISTRY)))
        return 0
    run(args.names, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The platform's main job end to end: all six services on this machine, phantom DCE studies pushed over C-STORE.

Measured (``python -m benchmarks pipeline``):

- **study complete -> result stored and exported** per study size (ispy 256 x 256 x 60 x 4 phases; duke 512 x
  512 x 170 x 4): from the job's creation (the listener hands a study off right after it completes) to DONE (the
  export stage, last, has sent the SEG, SR and PDF to a dcmtk ``storescp`` acting as PACS and the result is
  stored); median of :data:`RUNS` distinct studies each. Targets: ispy <= 8 s, duke <= 25 s.
- the listener's **quiet period + hand-off**, reported separately (push end -> job created; the quiet period is
  set to :data:`QUIET_PERIOD_S`);
- the **per-stage breakdown** (median seconds per stage, from the job events' timestamps);
- **peak RSS per service** (``VmHWM`` of the service process plus that of its child processes, e.g. the
  feature workers, read before the platform stops), MiB;
- **studies per hour** with :data:`QUEUED` ispy studies pushed back to back: queued studies / (last DONE -
  first job created) x 3600.

Every study is a distinct phantom (its own seed, so its own UIDs): a re-sent study would be the same job.
``ONCOHABITAT_BENCH_QUICK=1`` runs one study per size and 2 queued (a smoke run, not a measurement).
The last printed line is ``{"ispy_s", "duke_s", "studies_per_hour", "peak_rss_mib", ...}``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.runner import Measurement, register, summary_line
from oncohabitat.orchestrator.jobs import JobState, parse_rfc3339
from oncohabitat.orchestrator.jobstore import SqliteJobStore
from oncohabitat.phantom import PhantomStudy, generate_study

QUICK = os.environ.get("ONCOHABITAT_BENCH_QUICK") == "1"
RUNS = 1 if QUICK else 5
QUEUED = 2 if QUICK else 10
QUIET_PERIOD_S = 1.0
STAGES = ("load_study", "segment", "regions", "features", "score", "export")
TARGETS = {"ispy": 8.0, "duke": 25.0}
TERMINAL = {JobState.DONE, JobState.NEEDS_REVIEW, JobState.FAILED, JobState.CANCELLED}


def _process_tree_hwm_mib(pid: int) -> float:
    """VmHWM of ``pid`` plus that of every descendant, MiB (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        stack.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


class _Bench:
    """The running platform, its PACS and job store, and the measurements so far."""

    def __init__(self, workdir: Path) -> None:
        from tests.support.dcmtk import StoreSCP
        from tests.support.platform import Platform

        self.pacs = StoreSCP(workdir / "pacs", ae_title="PACS")
        self.pacs.start()
        overrides = {
            "ONCOHABITAT_LISTENER_QUIET_PERIOD_S": str(QUIET_PERIOD_S),
            "ONCOHABITAT_ORCHESTRATOR_EXPORT_DESTINATION": self.pacs.destination,
        }
        self.platform = Platform(workdir / "platform", overrides)
        self.platform.start(timeout_s=180)
        self.store = SqliteJobStore(self.platform.data_dir / "jobs.sqlite3")

    def close(self) -> dict[str, float]:
        """Peak RSS per service (MiB), then stop everything."""
        rss = {name: _process_tree_hwm_mib(s.process.pid) for name, s in self.platform.running.items()}
        self.store.close()
        self.platform.stop()
        self.pacs.stop()
        return rss

    def push(self, studies: Sequence[PhantomStudy]) -> float:
        """C-STORE the studies (dcmtk storescu); returns the time the push ended (epoch s)."""
        from tests.support.dcmtk import storescu

        pushed = storescu(self.platform.dicom_port, [study.dicom_dir for study in studies])
        if pushed.returncode != 0:
            raise RuntimeError(f"storescu failed: {pushed.stderr[-2000:]}")
        return time.time()

    def wait_jobs(self, count: int, known: set[str], timeout_s: float = 900.0) -> list[str]:
        """Ids of ``count`` new jobs (not in ``known``) once all of them are terminal."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            jobs = [j for j in self.store.list(None, 1000) if j.job_id not in known]
            if len(jobs) >= count and all(j.state in TERMINAL for j in jobs):
                return [j.job_id for j in jobs]
            time.sleep(0.2)
        raise TimeoutError(self.platform.log("orchestrator"))

    def timings(self, job_id: str) -> tuple[float, dict[str, float], float, float]:
        """(created -> DONE seconds, seconds per stage, created epoch, done epoch) of a DONE job."""
        job = self.store.get(job_id)
        if job is None or job.state is not JobState.DONE:
            reason = job.reason if job is not None else "missing"
            raise RuntimeError(f"job {job_id} did not finish DONE: {reason}")
        created = parse_rfc3339(job.created_at).timestamp()
        done = parse_rfc3339(job.updated_at).timestamp()
        starts: dict[str, float] = {}
        for event in self.store.events_since(job_id, 0):
            if event.state is JobState.RUNNING and event.stage in STAGES and event.stage not in starts:
                starts[event.stage] = parse_rfc3339(event.at).timestamp()
        ordered = [s for s in STAGES if s in starts]
        ends = [starts[s] for s in ordered[1:]] + [done]
        return done - created, {s: end - starts[s] for s, end in zip(ordered, ends, strict=True)}, created, done


def _run_size(bench: _Bench, size: str, seeds: Sequence[int], scratch: Path) -> list[Measurement]:
    totals: list[float] = []
    handoffs: list[float] = []
    per_stage: dict[str, list[float]] = {s: [] for s in STAGES}
    for seed in seeds:
        study = generate_study(scratch / f"{size}-{seed}", size=size, seed=seed)
        known = {j.job_id for j in bench.store.list(None, 1000)}
        pushed_at = bench.push([study])
        (job_id,) = bench.wait_jobs(1, known)
        total, stages, created, _done = bench.timings(job_id)
        totals.append(total)
        handoffs.append(created - pushed_at)
        for stage, seconds in stages.items():
            per_stage[stage].append(seconds)
    name = f"pipeline {size}"
    rows = [
        Measurement(
            name,
            "study complete -> stored + exported (median)",
            statistics.median(totals),
            "s",
            target=f"<= {TARGETS[size]:g} s",
        ),
        Measurement(name, "study complete -> stored + exported (max)", max(totals), "s"),
        Measurement(
            name,
            f"listener quiet period ({QUIET_PERIOD_S:g} s) + hand-off (median)",
            statistics.median(handoffs),
            "s",
            target="excluded from the above",
        ),
    ]
    rows += [
        Measurement(name, f"stage {stage} (median)", statistics.median(values), "s")
        for stage, values in per_stage.items()
        if values
    ]
    return rows


def _throughput(bench: _Bench, scratch: Path) -> Measurement:
    studies = [generate_study(scratch / f"queued-{n}", size="ispy", seed=9000 + n) for n in range(QUEUED)]
    known = {j.job_id for j in bench.store.list(None, 1000)}
    bench.push(studies)
    jobs = bench.wait_jobs(QUEUED, known, timeout_s=1800)
    spans = [bench.timings(job_id) for job_id in jobs]
    first_created, last_done = min(s[2] for s in spans), max(s[3] for s in spans)
    per_hour = QUEUED / (last_done - first_created) * 3600.0
    return Measurement("pipeline queue", f"studies per hour ({QUEUED} ispy queued)", per_hour, "studies/h")


@register("pipeline")
def bench_pipeline() -> list[Measurement]:
    """See the module docstring."""
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        scratch = Path(tmp)
        bench = _Bench(scratch / "run")
        try:
            rows = _run_size(bench, "ispy", [100 + n for n in range(RUNS)], scratch)
            rows += _run_size(bench, "duke", [200 + n for n in range(RUNS)], scratch)
            rows.append(_throughput(bench, scratch))
        finally:
            rss = bench.close()
    rows += [Measurement("pipeline rss", f"peak RSS {name}", value, "MiB") for name, value in sorted(rss.items())]
    value = {row.metric: row.value for row in rows if row.benchmark == "pipeline ispy"}
    duke = {row.metric: row.value for row in rows if row.benchmark == "pipeline duke"}
    metric = "study complete -> stored + exported (median)"
    summary = {
        "ispy_s": round(value[metric], 3),
        "duke_s": round(duke[metric], 3),
        "studies_per_hour": round(next(r.value for r in rows if r.benchmark == "pipeline queue"), 1),
        "peak_rss_mib": round(max(rss.values()), 1),
    }
    summary.update({f"peak_rss_{name}_mib": round(v, 1) for name, v in sorted(rss.items())})
    summary_line(summary)
    return rows

"""``oncohabitat-train extract``: a cohort file and a plan -> one feature table, resumable, failures isolated.

Flow: read and validate the cohort file (:func:`~oncohabitat_training.cohorts.read_cohort`; a problem of the
whole file always stops; row problems stop the run with ``on_error="stop"``, else those rows are listed as
failures and skipped) -> reuse the parts of finished patients (:mod:`.parts`) -> extract the others on the
executor (:mod:`.executors`: this process, local processes, or Dask), writing each finished patient's part at
once -> list failures in ``<work>/failures.csv`` (row, patient id, reason) -> write the table (:mod:`.table`) of
the extracted patients in cohort order; with ``on_error="stop"`` the first failure stops the run and no table
is written (the finished parts stay for the next run). Patients extracted against a second reader's mask also
give ``<table stem>.reader2.parquet`` (same columns, those patients only).

Logs and the progress bar carry counts only; patient ids appear in the table and the failures file.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from oncohabitat.bundles.plan import ExtractionPlan
from oncohabitat_training.cohorts import Cohort, CohortFileError, CohortPatient, read_cohort
from oncohabitat_training.extraction import patient as patient_step
from oncohabitat_training.extraction.executors import make_executor
from oncohabitat_training.extraction.parts import PartStore
from oncohabitat_training.extraction.patient import PatientResult, PatientTask
from oncohabitat_training.extraction.segment import SegmentationOptions
from oncohabitat_training.extraction.table import feature_table, write_table

logger = logging.getLogger(__name__)

OnError = Literal["continue", "stop"]
FAILURES_FILE = "failures.csv"


@dataclass(frozen=True)
class Failure:
    """A patient left out of the table: its cohort row, id and curated reason."""

    row: int
    patient_id: str
    reason: str


@dataclass(frozen=True)
class ExtractConfig:
    """Where the table goes and how the run behaves.

    ``work_dir`` (default ``<out stem>.work`` beside the table) keeps the parts and the failures file;
    ``workers`` local processes (1 = this process) unless ``scheduler`` (a Dask address or client) is given.
    """

    out: Path
    work_dir: Path | None = None
    on_error: OnError = "continue"
    workers: int = 1
    scheduler: Any | None = None
    segmentation: SegmentationOptions = field(default_factory=SegmentationOptions)
    progress: bool = True

    def work_folder(self) -> Path:
        """The work folder."""
        return self.work_dir or self.out.parent / f"{self.out.stem}.work"


@dataclass(frozen=True)
class ExtractReport:
    """What a run did: the table (None when it stopped), patients computed / reused, failures, wall time (s)."""

    table: Path | None
    computed: int
    reused: int
    failures: tuple[Failure, ...]
    failures_file: Path
    seconds: float
    reader2_table: Path | None = None
    seconds_per_patient: float = 0.0


def _extract(task: PatientTask) -> PatientResult:
    """The per-patient step, looked up at call time (so it can be replaced in tests)."""
    return patient_step.extract_patient(task)


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("extracting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def _write_failures(path: Path, failures: list[Failure]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["row", "patient_id", "reason"])
        writer.writerows((f.row, f.patient_id, f.reason) for f in sorted(failures, key=lambda f: f.row))


def _cohort(cohort_path: Path, on_error: OnError) -> tuple[Cohort, list[Failure]]:
    check = read_cohort(cohort_path)
    if check.fatal or check.cohort is None or (check.problems and on_error == "stop"):
        raise CohortFileError(check.problems)
    failures = [
        Failure(p.row, p.patient_id or "", f"COHORT_INVALID: column {p.column}: {p.message}") for p in check.problems
    ]
    return check.cohort, failures


def _tables(
    cohort: Cohort, plan: ExtractionPlan, results: Mapping[int, PatientResult], out: Path
) -> tuple[Path, Path | None]:
    ordered = [(cohort.patients[i], results[i]) for i in sorted(results)]
    table = write_table(feature_table(cohort, plan, [(p, r.features or {}) for p, r in ordered]), out)
    second: list[tuple[CohortPatient, Mapping[str, float]]] = [(p, r.reader2) for p, r in ordered if r.reader2]
    if not second:
        return table, None
    return table, write_table(feature_table(cohort, plan, second), out.with_name(f"{out.stem}.reader2.parquet"))


def run_extraction(cohort_path: Path, plan: ExtractionPlan, config: ExtractConfig) -> ExtractReport:
    """Extract the cohort (see the module docstring).

    Raises:
        CohortFileError: the cohort file has a whole-file problem, or any problem with ``on_error="stop"``.
    """
    started = time.perf_counter()
    cohort, failures = _cohort(cohort_path, config.on_error)
    work = config.work_folder()
    store = PartStore(work, plan.sha256())
    results: dict[int, PatientResult] = {}
    tasks: list[PatientTask] = []
    for position, patient in enumerate(cohort.patients):
        part = store.load(patient, position)
        if part is not None:
            results[position] = part
        else:
            tasks.append(PatientTask(position, patient, plan, config.segmentation))
    reused, computed, stopped, busy = len(results), 0, False, 0.0
    logger.info("extraction starts", extra={"patients": len(cohort.patients), "reused": reused, "to_do": len(tasks)})
    with _progress(config.progress) as progress:
        bar = progress.add_task("extract", total=len(cohort.patients), completed=reused)
        executor = make_executor(max(1, min(config.workers, len(tasks))), config.scheduler)
        try:
            for result in executor.run(_extract, tasks):
                patient = cohort.patients[result.position]
                progress.advance(bar)
                if result.failure is not None:
                    failures.append(Failure(patient.row, patient.patient_id, result.failure))
                    if config.on_error == "stop":
                        stopped = True
                        break
                    continue
                store.save(patient, result)
                results[result.position] = result
                computed, busy = computed + 1, busy + result.seconds
        finally:
            executor.close()
    failures_file = work / FAILURES_FILE
    _write_failures(failures_file, failures)
    table = second = None
    if not stopped and results:
        table, second = _tables(cohort, plan, results, config.out)
    logger.info("extraction finished", extra={"computed": computed, "reused": reused, "failed": len(failures)})
    return ExtractReport(
        table=table,
        computed=computed,
        reused=reused,
        failures=tuple(sorted(failures, key=lambda f: f.row)),
        failures_file=failures_file,
        seconds=time.perf_counter() - started,
        reader2_table=second,
        seconds_per_patient=busy / computed if computed else 0.0,
    )

"""Run one study folder through the orchestrator's stages in this process and write the results.

The folder's DICOM files are the "DICOM store"; the study key and content digest follow the listener's scheme
(:mod:`oncohabitat.dicomio.identifiers`), the submission is validated like SubmitStudy's, and a job store
(``OUT/.work/jobs.sqlite3``) with the orchestrator's :class:`JobRunner` runs :func:`build_stages`' stages; only
the export stage differs: it writes the SEG, SR and key-image PDF to ``OUT`` instead of sending them. Running
the same folder again into the same ``OUT`` returns the stored job (same content = same job).

Outputs in ``OUT``: ``result.json`` (the JobResult as GetResult returns it, plus ``stage_seconds``),
``00-seg.dcm``, ``01-sr.dcm``, ``02-doc.dcm`` (encapsulated PDF) and ``report.pdf`` (the PDF itself).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from google.protobuf.json_format import MessageToDict

from oncohabitat.analyze.workers import build_workers
from oncohabitat.common.errors import InvalidInputError
from oncohabitat.dicomio import ExportError
from oncohabitat.dicomio.dce import DceRules
from oncohabitat.dicomio.identifiers import content_digest, uid_key
from oncohabitat.orchestrator.export_stage import build_export_objects, write_export_files
from oncohabitat.orchestrator.jobs import Job, JobState
from oncohabitat.orchestrator.jobstore import SqliteJobStore
from oncohabitat.orchestrator.results import job_result_from_stages
from oncohabitat.orchestrator.retry import RetryPolicy
from oncohabitat.orchestrator.runner import FunctionStage, JobRunner, StageOutcome, StageResults
from oncohabitat.orchestrator.servicer import job_to_proto
from oncohabitat.orchestrator.stages import EXPORT_STAGE, PipelineContext, build_stages
from oncohabitat.orchestrator.submission import validate_submission
from oncohabitat.orchestrator.upload import instance_uids
from oncohabitat.v1 import pipeline_pb2

#: ``progress(stage, seconds)`` after each stage that ran.
Progress = Callable[[str, float], None]


@dataclass
class AnalyzeOutcome:
    """The job as stored, its public result and the files written."""

    job: Job
    result: pipeline_pb2.JobResult
    files: list[Path] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)


def study_files(dicom_dir: Path, exclude: Path | None = None) -> list[Path]:
    """Every DICOM Part-10 file under ``dicom_dir`` (recursively), outside ``exclude``."""
    skip = exclude.resolve() if exclude is not None else None
    files = []
    for path in sorted(dicom_dir.rglob("*")):
        if skip is not None and path.resolve().is_relative_to(skip):
            continue
        if path.is_file() and pydicom.misc.is_dicom(path):
            files.append(path)
    if not files:
        raise InvalidInputError("INSTANCES_MISSING", "the folder holds no DICOM Part-10 file", "DIR")
    return files


def submission_for(
    dicom_dir: Path, files: Sequence[Path], covariates: Mapping[str, Any], seed_point: Sequence[float] | None
) -> pipeline_pb2.SubmitStudyRequest:
    """The SubmitStudy request the listener would send for these files (one study), plus the clinical inputs."""
    studies, pairs = set(), []
    for path in files:
        data = path.read_bytes()
        study, _series, sop = instance_uids(data)
        studies.add(study)
        pairs.append((sop, hashlib.sha256(data).hexdigest()))
    if len(studies) != 1:
        raise InvalidInputError("UPLOAD_MIXED_STUDIES", f"the folder holds {len(studies)} studies; give one", "DIR")
    request = pipeline_pb2.SubmitStudyRequest(
        study_key=uid_key(studies.pop()),
        content_digest=content_digest(pairs),
        instance_paths=[path.resolve().relative_to(dicom_dir.resolve()).as_posix() for path in files],
    )
    for name, value in covariates.items():
        if isinstance(value, bool):
            request.covariates[name].flag = value
        elif isinstance(value, int | float):
            request.covariates[name].number = float(value)
        else:
            request.covariates[name].category = str(value)
    if seed_point is not None:
        request.seed_point.x, request.seed_point.y, request.seed_point.z = (float(v) for v in seed_point)
    return request


def _write_stage(context: PipelineContext, out_dir: Path, files: list[Path]) -> FunctionStage:
    """The export stage of ``analyze``: the same objects as the orchestrator's, written to ``out_dir``."""

    def run(job: Job, previous: StageResults) -> StageOutcome:
        try:
            objects = build_export_objects(context, job, previous)
        except ExportError as exc:
            return StageOutcome.failed(f"EXPORT_BUILD_FAILED: {exc.reason}")
        written = write_export_files(objects, out_dir)
        report = out_dir / "report.pdf"
        report.write_bytes(bytes(objects.pdf.EncapsulatedDocument).rstrip(b"\x00"))
        files[:] = [*written, report]
        return StageOutcome.ok({"sent": [], "written": [path.name for path in files]})

    return FunctionStage(EXPORT_STAGE, run)


def _timed(stage: FunctionStage, seconds: dict[str, float], progress: Progress | None) -> FunctionStage:
    def run(job: Job, previous: StageResults) -> StageOutcome:
        started = time.perf_counter()
        try:
            return stage.run(job, previous)
        finally:
            seconds[stage.name] = time.perf_counter() - started
            if progress is not None:
                progress(stage.name, seconds[stage.name])

    return FunctionStage(stage.name, run)


def analyze_folder(
    dicom_dir: Path,
    out_dir: Path,
    models_dir: Path,
    *,
    covariates: Mapping[str, Any] | None = None,
    seed_point: Sequence[float] | None = None,
    feature_workers: int = 0,
    dce_rules: DceRules | None = None,
    progress: Progress | None = None,
) -> AnalyzeOutcome:
    """Run the pipeline on ``dicom_dir`` and write the results to ``out_dir`` (see the module docstring).

    Raises:
        InvalidInputError: no DICOM file, several studies, or an invalid covariate / seed point.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / ".work"
    request = submission_for(dicom_dir, study_files(dicom_dir, exclude=out_dir), covariates or {}, seed_point)
    payload = validate_submission(request)
    workers = build_workers(dicom_dir, work, models_dir, feature_workers=feature_workers, dce_rules=dce_rules)
    store = SqliteJobStore(work / "jobs.sqlite3")
    files: list[Path] = []
    seconds: dict[str, float] = {}
    try:
        stages = [stage for stage in build_stages(workers.context) if stage.name != EXPORT_STAGE]
        stages.append(_write_stage(workers.context, out_dir, files))
        timed = [_timed(stage, seconds, progress) for stage in stages]
        job_id, _created = store.submit(request.study_key, request.content_digest, payload)
        runner = JobRunner(store, timed, "analyze", lease_s=3600.0, retry_policy=RetryPolicy(max_attempts=1))
        runner.run_until_idle()
        job = store.get(job_id)
        assert job is not None  # submitted above
        results = store.load_stage_results(job_id)
    finally:
        store.close()
        workers.close()
    result = job_result_from_stages(results) if job.state is JobState.DONE else pipeline_pb2.JobResult()
    result.job.CopyFrom(job_to_proto(job))
    document = MessageToDict(result, preserving_proto_field_name=True)
    document["stage_seconds"] = {name: round(value, 3) for name, value in seconds.items()}
    document["files"] = [path.name for path in files] or list(results.get(EXPORT_STAGE, {}).get("written", []))
    (out_dir / "result.json").write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return AnalyzeOutcome(job, result, files, seconds)

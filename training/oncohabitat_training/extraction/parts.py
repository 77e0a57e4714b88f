"""Durable per-patient results of an extraction run, so that an interrupted run resumes where it stopped.

Layout under the work folder: ``parts/<plan sha256[:16]>/<key>.json``, one file per finished patient, where
``key`` is the SHA-256 (first 32 hex digits) of the patient id and its inputs (image source, masks, seed):
changing the plan or a patient's inputs computes that patient again; editing covariates or outcomes does not
(they enter the table, not the part). A part is written to a temporary file, flushed to disk (fsync) and
renamed into place, so a part file is either complete or absent. Values are JSON numbers (Python's shortest
round-trip repr, exact) with ``null`` for NaN. Failed patients leave no part: a rerun tries them again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from oncohabitat_training.cohorts import CohortPatient
from oncohabitat_training.extraction.patient import PatientResult

PART_FORMAT = 1


def _encode(values: Mapping[str, float] | None) -> dict[str, float | None] | None:
    if values is None:
        return None
    return {name: (None if math.isnan(value) else value) for name, value in values.items()}


def _decode(values: Mapping[str, float | None] | None) -> dict[str, float] | None:
    if values is None:
        return None
    return {name: (math.nan if value is None else float(value)) for name, value in values.items()}


class PartStore:
    """The finished patients of one plan under a work folder (see the module docstring)."""

    def __init__(self, work_dir: Path, plan_sha256: str) -> None:
        self.directory = Path(work_dir) / "parts" / plan_sha256[:16]
        self.directory.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(patient: CohortPatient) -> str:
        """The part name of a patient: hash of its id and inputs (no patient id in file names)."""
        text = json.dumps({"patient_id": patient.patient_id, **patient.input_key()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def path(self, patient: CohortPatient) -> Path:
        """Where the patient's part lives."""
        return self.directory / f"{self.key(patient)}.json"

    def load(self, patient: CohortPatient, position: int) -> PatientResult | None:
        """The patient's finished result, None when it has none (or an unreadable one)."""
        path = self.path(patient)
        try:
            document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        if document.get("format") != PART_FORMAT or document.get("patient_id") != patient.patient_id:
            return None
        return PatientResult(
            position,
            patient.patient_id,
            features=_decode(document["features"]),
            missing=document.get("missing", {}),
            reader2=_decode(document.get("reader2")),
            method=document.get("method", ""),
            seconds=float(document.get("seconds", 0.0)),
        )

    def save(self, patient: CohortPatient, result: PatientResult) -> Path:
        """Write a finished patient's part durably (temporary file, fsync, rename)."""
        document = {
            "format": PART_FORMAT,
            "patient_id": patient.patient_id,
            "inputs": patient.input_key(),
            "method": result.method,
            "seconds": result.seconds,
            "features": _encode(result.features),
            "missing": dict(result.missing),
            "reader2": _encode(result.reader2),
        }
        target = self.path(patient)
        handle, temporary = tempfile.mkstemp(prefix=".part-", suffix=".json", dir=self.directory)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(document, stream, allow_nan=False)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return target

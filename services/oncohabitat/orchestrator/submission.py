"""Validation of SubmitStudy requests before they become durable jobs: every field bounded (counts, lengths,
total size) and refused with INVALID_ARGUMENT beyond, shapes checked. Who may submit what (paths, destinations)
is :mod:`oncohabitat.orchestrator.admission`'s job."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any

from oncohabitat.common.errors import InvalidInputError
from oncohabitat.v1 import pipeline_pb2, segmentation_pb2

_STUDY_KEY = re.compile(r"^[0-9a-f]{16,64}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_DESTINATION = re.compile(r"^[ -~]{1,64}$")
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/]{0,127}$")
_COVARIATE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_INSTANCES = 20_000
MAX_COVARIATES = 100
MAX_MODEL_IDS = 32
MAX_PATH_CHARS = 256
MAX_CATEGORY_CHARS = 256
#: Largest SubmitStudy request accepted, bytes (paths of MAX_INSTANCES instances plus a classification fit).
MAX_SUBMISSION_BYTES = 8 * 1024 * 1024
#: Largest seed coordinate accepted, mm (a patient is well inside +-10 m of the scanner's origin).
MAX_SEED_ABS_MM = 10_000.0
#: Largest DCE classification accepted from the listener, characters.
MAX_CLASSIFICATION_CHARS = 4_000_000


def covariates_to_json(
    request: pipeline_pb2.SubmitStudyRequest | pipeline_pb2.UploadHeader,
) -> dict[str, float | bool | str]:
    """The submission's clinical covariates as JSON values (number, boolean or category), checked for shape only.

    Whether a model needs them, and their ranges and categories, are checked by the scoring service per model.

    Raises:
        InvalidInputError: ``COVARIATE_INVALID`` naming a badly named, empty or non-finite covariate.
    """
    if len(request.covariates) > MAX_COVARIATES:
        raise InvalidInputError("COVARIATE_INVALID", f"at most {MAX_COVARIATES} covariates per study", "covariates")
    values: dict[str, float | bool | str] = {}
    for name in sorted(request.covariates):
        value = request.covariates[name]
        which = value.WhichOneof("value")
        if not _COVARIATE.match(name) or which is None:
            raise InvalidInputError(
                "COVARIATE_INVALID", f"covariate {name[:64]!r} needs a lower-case name and a value", "covariates"
            )
        if which == "number" and not math.isfinite(value.number):
            raise InvalidInputError("COVARIATE_INVALID", f"covariate {name!r} is NaN or infinite", "covariates")
        if which == "category" and len(value.category) > MAX_CATEGORY_CHARS:
            raise InvalidInputError("COVARIATE_INVALID", f"covariate {name!r} has a too long category", "covariates")
        values[name] = value.number if which == "number" else value.flag if which == "flag" else value.category
    return values


def check_model_ids(model_ids: Sequence[str]) -> list[str]:
    """The requested model ids, bounded in count and length.

    Raises:
        InvalidInputError: ``MODEL_IDS_INVALID`` naming ``model_ids``.
    """
    if len(model_ids) > MAX_MODEL_IDS or not all(_MODEL_ID.match(m) for m in model_ids):
        raise InvalidInputError(
            "MODEL_IDS_INVALID", f"at most {MAX_MODEL_IDS} model ids of at most 128 characters each", "model_ids"
        )
    return list(model_ids)


def check_bounds(request: pipeline_pb2.SubmitStudyRequest) -> None:
    """Counts, lengths and total size of a submission, before anything else looks at it.

    Raises:
        InvalidInputError: naming the first field beyond its bound.
    """
    if request.ByteSize() > MAX_SUBMISSION_BYTES:
        raise InvalidInputError("SUBMISSION_TOO_LARGE", "the submission is too large", "")
    if not _STUDY_KEY.match(request.study_key):
        raise InvalidInputError("STUDY_KEY_INVALID", "study_key must be 16-64 lowercase hex characters", "study_key")
    if len(request.content_digest) > 64:
        raise InvalidInputError("CONTENT_DIGEST_INVALID", "content_digest is too long", "content_digest")
    if len(request.instance_paths) > MAX_INSTANCES:
        raise InvalidInputError("TOO_MANY_INSTANCES", f"at most {MAX_INSTANCES} instances per study", "instance_paths")
    if any(len(path) > MAX_PATH_CHARS for path in request.instance_paths):
        raise InvalidInputError("INSTANCE_PATH_INVALID", "an instance path is too long", "instance_paths")
    if not _DESTINATION.match(request.export_destination or " "):
        raise InvalidInputError(
            "EXPORT_DESTINATION_INVALID",
            "export_destination must be at most 64 printable characters",
            "export_destination",
        )
    check_model_ids(request.model_ids)


def seed_point_to_json(seed: segmentation_pb2.PointMm, field: str = "seed_point") -> list[float]:
    """A seed point (patient coordinates LPS, mm) as ``[x, y, z]``, checked finite and within +-10 m.

    Raises:
        InvalidInputError: ``SEED_POINT_INVALID`` naming ``field``.
    """
    values = [seed.x, seed.y, seed.z]
    if not all(math.isfinite(v) and abs(v) <= MAX_SEED_ABS_MM for v in values):
        raise InvalidInputError(
            "SEED_POINT_INVALID", f"{field} needs finite x, y, z in mm within +-{MAX_SEED_ABS_MM:g}", field
        )
    return values


def classification_to_json(text: str, instance_paths: set[str]) -> dict[str, Any] | None:
    """The listener's DCE classification (``dce_classification_json``) checked for shape; None when empty.

    Every phase must name its instance paths, each one of the submission's ``instance_paths``.

    Raises:
        InvalidInputError: ``DCE_CLASSIFICATION_INVALID`` naming ``dce_classification_json``.
    """
    if not text:
        return None
    field = "dce_classification_json"
    if len(text) > MAX_CLASSIFICATION_CHARS:
        raise InvalidInputError("DCE_CLASSIFICATION_INVALID", "the DCE classification is too large", field)
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidInputError("DCE_CLASSIFICATION_INVALID", "the DCE classification is not JSON", field) from None
    phases = value.get("phases") if isinstance(value, dict) else None
    if not isinstance(phases, list) or not all(isinstance(p, dict) for p in phases):
        raise InvalidInputError("DCE_CLASSIFICATION_INVALID", "the DCE classification lists no phases", field)
    for phase in phases:
        paths = phase.get("instance_paths")
        if not isinstance(paths, list) or not paths or not set(paths) <= instance_paths:
            raise InvalidInputError(
                "DCE_CLASSIFICATION_INVALID", "each phase must list instance paths of the submission", field
            )
    return value


def job_digest(content_digest: str, payload: dict[str, Any]) -> str:
    """The digest a job is keyed by: the study's content digest, folded with the submission's inputs when it has
    any (covariates, seed point, model choice), so that a study submitted again with other inputs is a new job
    while a re-send of the same content with the same inputs (or none, as the listener sends) is the same job."""
    inputs = {key: payload[key] for key in ("covariates", "seed_point_mm", "model_ids") if payload.get(key)}
    if not inputs:
        return content_digest
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{content_digest}\n{text}".encode()).hexdigest()


def validate_submission(request: pipeline_pb2.SubmitStudyRequest) -> dict[str, Any]:
    """Check a submission and return the JSON request stored with the job.

    Raises:
        InvalidInputError: naming the offending field (study_key, content_digest, instance_paths, ...).
    """
    check_bounds(request)
    if not _DIGEST.match(request.content_digest):
        raise InvalidInputError(
            "CONTENT_DIGEST_INVALID", "content_digest must be a lowercase hex SHA-256", "content_digest"
        )
    if not request.instance_paths:
        raise InvalidInputError("INSTANCES_MISSING", "instance_paths must list the study's instances", "instance_paths")
    for raw in request.instance_paths:
        path = PurePosixPath(raw)
        if path.is_absolute() or ".." in path.parts or not raw or "\x00" in raw:
            raise InvalidInputError(
                "INSTANCE_PATH_INVALID", "instance paths must be relative to the DICOM store", "instance_paths"
            )
    payload: dict[str, Any] = {
        "instance_paths": sorted(request.instance_paths),
        "model_ids": check_model_ids(request.model_ids),
        "export_destination": request.export_destination,
        "covariates": covariates_to_json(request),
    }
    if request.HasField("seed_point"):
        payload["seed_point_mm"] = seed_point_to_json(request.seed_point)
    classification = classification_to_json(request.dce_classification_json, set(request.instance_paths))
    if classification is not None:
        payload["dce_classification"] = classification
    return payload

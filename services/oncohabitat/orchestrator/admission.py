"""Who may submit what: the policy between a SubmitStudy request and a durable job.

- The platform's own callers (``service`` role: the listener's hand-off, and the orchestrator's uploads) name the
  study's instances; every path must lie in that study's own directory of the DICOM store
  (``instances/<study_key>/`` or ``uploads/<study_key>/``), so a submission cannot borrow another study's files.
- Everyone else submits *by reference*: the study key of a study the listener holds. Client-supplied paths and
  DCE classifications are refused; the orchestrator lists the study's instances itself and computes the content
  digest from their bytes.
- The export destination is resolved against the deployment's allow-list (:mod:`.destinations`).

With authentication off (no tokens file) every caller counts as the platform's own.
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath
from typing import Any

from oncohabitat.common.errors import InvalidInputError, NotFoundError, PreconditionError
from oncohabitat.orchestrator.destinations import ExportDestinations
from oncohabitat.orchestrator.submission import MAX_INSTANCES, check_bounds, job_digest, validate_submission
from oncohabitat.v1 import pipeline_pb2

#: Top directories of the DICOM store that hold studies, each as ``<dir>/<study_key>/...``.
STUDY_DIRS = ("instances", "uploads")
_HASH_CHUNK = 1 << 20


def check_paths_belong(study_key: str, paths: list[str]) -> None:
    """Every path must be inside the study's own directory.

    Raises:
        InvalidInputError: ``INSTANCE_PATH_INVALID`` naming ``instance_paths``.
    """
    for raw in paths:
        parts = PurePosixPath(raw).parts
        if len(parts) < 3 or parts[0] not in STUDY_DIRS or parts[1] != study_key:
            raise InvalidInputError(
                "INSTANCE_PATH_INVALID", "instance paths must lie in the submitted study's directory", "instance_paths"
            )


def study_instances(store_root: Path, study_key: str) -> list[str]:
    """The study's stored instances (relative POSIX paths), listener's store first; empty when unknown.

    Raises:
        InvalidInputError: more than ``MAX_INSTANCES`` instances.
    """
    for top in STUDY_DIRS:
        base = store_root / top / study_key
        if base.is_dir():
            found = sorted(p.relative_to(store_root).as_posix() for p in base.glob("*/*.dcm") if p.is_file())
            if len(found) > MAX_INSTANCES:
                raise InvalidInputError("TOO_MANY_INSTANCES", "the study has too many instances", "study_key")
            if found:
                return found
    return []


def stored_content_digest(store_root: Path, paths: list[str]) -> str:
    """SHA-256 over the sorted ``"<path> <sha256 of its bytes>"`` lines of the study's instances."""
    digest = hashlib.sha256()
    for relative in sorted(paths):
        file_hash = hashlib.sha256()
        with (store_root / relative).open("rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                file_hash.update(chunk)
        digest.update(f"{relative} {file_hash.hexdigest()}\n".encode())
    return digest.hexdigest()


def _by_reference(request: pipeline_pb2.SubmitStudyRequest, store_root: Path | None) -> None:
    """Fill in the instances and content digest of a submission by reference (in place)."""
    if request.instance_paths:
        raise InvalidInputError(
            "INSTANCE_PATHS_NOT_ACCEPTED",
            "name the study by study_key only; the platform resolves its instances itself",
            "instance_paths",
        )
    if request.dce_classification_json:
        raise InvalidInputError(
            "DCE_CLASSIFICATION_NOT_ACCEPTED", "the DCE classification is the platform's own", "dce_classification_json"
        )
    check_bounds(request)  # before touching the disk with the key
    if store_root is None:
        raise PreconditionError("STUDY_STORE_MISSING", "this orchestrator has no DICOM store to resolve studies", "")
    paths = study_instances(store_root, request.study_key)
    if not paths:
        raise NotFoundError("STUDY_NOT_FOUND", "no study with this study_key is held by the platform", "study_key")
    request.instance_paths.extend(paths)
    request.content_digest = stored_content_digest(store_root, paths)


def admit_submission(
    request: pipeline_pb2.SubmitStudyRequest,
    store_root: Path | None,
    destinations: ExportDestinations,
    platform_caller: bool,
) -> tuple[dict[str, Any], str]:
    """Check a submission against the policy; returns the job payload and the job digest.

    Raises:
        InvalidInputError, NotFoundError, PreconditionError: the submission is refused; nothing is stored or sent.
    """
    admitted = pipeline_pb2.SubmitStudyRequest()
    admitted.CopyFrom(request)
    if platform_caller:
        check_bounds(admitted)
        check_paths_belong(admitted.study_key, list(admitted.instance_paths))
    else:
        _by_reference(admitted, store_root)
    admitted.export_destination = destinations.resolve(admitted.export_destination)
    payload = validate_submission(admitted)
    return payload, job_digest(admitted.content_digest, payload)

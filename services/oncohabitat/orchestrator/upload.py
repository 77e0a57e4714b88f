"""UploadStudy: a study's instances received in a client stream, written durably to the DICOM store.

For hospital services without a PACS route. The stream's first chunk carries the :class:`UploadHeader`; then
each instance's Part-10 bytes follow in one or more chunks, the last with ``end_of_instance``. Each instance is
checked (a Part-10 file with the ``DICM`` prefix that pydicom reads, valid Study / Series / SOP Instance UIDs,
the same study as the others) and written with a temporary file, fsync, rename and directory fsync to
``<dicom store>/uploads/<study key>/<series key>/<sop key>.dcm`` (opaque keys, never raw UIDs; the listener's
key scheme, outside its ``instances/`` tree). The study key and content digest are the listener's
(:mod:`oncohabitat.dicomio.identifiers`), so the same study uploaded twice, or uploaded and also sent by PACS
with the same bytes, is one job. Only once every instance is durable does the caller create the job.

Bounds: :data:`MAX_INSTANCE_BYTES` per instance, :data:`MAX_STUDY_BYTES` per study, at most
:data:`~oncohabitat.orchestrator.submission.MAX_INSTANCES` instances (RESOURCE_EXHAUSTED naming the field).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from oncohabitat.common.blobstore import atomic_write, fsync_directory
from oncohabitat.common.errors import InvalidInputError, ResourceExhaustedError
from oncohabitat.dicomio.identifiers import content_digest, is_valid_uid, uid_key
from oncohabitat.orchestrator.submission import MAX_INSTANCES
from oncohabitat.v1 import pipeline_pb2

UPLOADS_DIR = "uploads"
#: Largest instance accepted, bytes (an enhanced multi-frame MR series fits).
MAX_INSTANCE_BYTES = 512 * 1024 * 1024
#: Largest study accepted, bytes.
MAX_STUDY_BYTES = 4 * 1024 * 1024 * 1024


@dataclass
class ReceivedStudy:
    """What an upload stream delivered: its header, study key, content digest and stored instance paths."""

    header: pipeline_pb2.UploadHeader
    study_key: str = ""
    content_digest: str = ""
    instance_paths: list[str] = field(default_factory=list)

    def submission(self) -> pipeline_pb2.SubmitStudyRequest:
        """The equivalent SubmitStudyRequest (validated like any other submission)."""
        request = pipeline_pb2.SubmitStudyRequest(
            study_key=self.study_key,
            content_digest=self.content_digest,
            instance_paths=self.instance_paths,
            model_ids=list(self.header.model_ids),
            export_destination=self.header.export_destination,
        )
        for name, value in self.header.covariates.items():
            request.covariates[name].CopyFrom(value)
        if self.header.HasField("seed_point"):
            request.seed_point.CopyFrom(self.header.seed_point)
        return request


def _instances(chunks: Iterator[pipeline_pb2.UploadChunk], header_seen: bool) -> Iterator[bytes]:
    """Each instance's bytes, joined from the chunks (bounded)."""
    parts: list[bytes] = []
    size = study_size = 0
    for chunk in chunks:
        if chunk.HasField("header") and header_seen:
            raise InvalidInputError("UPLOAD_HEADER_REPEATED", "only the first chunk may carry a header", "header")
        size += len(chunk.data)
        study_size += len(chunk.data)
        if size > MAX_INSTANCE_BYTES:
            raise ResourceExhaustedError("UPLOAD_TOO_LARGE", f"an instance exceeds {MAX_INSTANCE_BYTES} bytes", "data")
        if study_size > MAX_STUDY_BYTES:
            raise ResourceExhaustedError("UPLOAD_TOO_LARGE", f"the study exceeds {MAX_STUDY_BYTES} bytes", "data")
        parts.append(chunk.data)
        if chunk.end_of_instance:
            yield b"".join(parts)
            parts, size = [], 0
    if size:
        raise InvalidInputError("UPLOAD_TRUNCATED", "the stream ended inside an instance (no end_of_instance)", "data")


def instance_uids(data: bytes) -> tuple[str, str, str]:
    """(study, series, SOP instance) UIDs of a Part-10 instance; INVALID_ARGUMENT for anything else."""
    if len(data) < 132 or data[128:132] != b"DICM":
        raise InvalidInputError("UPLOAD_NOT_DICOM", "an uploaded instance is not a DICOM Part-10 file", "data")
    try:
        dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        uids = (
            str(dataset.get("StudyInstanceUID", "")),
            str(dataset.get("SeriesInstanceUID", "")),
            str(dataset.get("SOPInstanceUID", "")),
        )
    except (InvalidDicomError, ValueError, TypeError, AttributeError, KeyError, EOFError, OSError):
        raise InvalidInputError("UPLOAD_NOT_DICOM", "an uploaded instance cannot be read as DICOM", "data") from None
    if not all(is_valid_uid(uid) for uid in uids):
        raise InvalidInputError(
            "UPLOAD_UID_INVALID", "an uploaded instance lacks a valid Study/Series/SOP Instance UID", "data"
        )
    return uids


def receive_upload(chunks: Iterator[pipeline_pb2.UploadChunk], store_root: Path) -> ReceivedStudy:
    """Read the stream, check and durably store every instance (see the module docstring).

    Raises:
        InvalidInputError: no header, non-DICOM data, mixed studies, an SOP Instance UID sent twice with
            other bytes, or no instance.
        ResourceExhaustedError: a size or count bound was exceeded.
    """
    stream = iter(chunks)
    first = next(stream, None)
    if first is None or not first.HasField("header"):
        raise InvalidInputError("UPLOAD_HEADER_MISSING", "the first chunk must carry the upload header", "header")
    received = ReceivedStudy(header=first.header)
    pending = [first] if first.data or first.end_of_instance else []
    study_uid = ""
    digests: dict[str, str] = {}
    for data in _instances(_chain(pending, stream), header_seen=True):
        study, series, sop = instance_uids(data)
        if study_uid and study != study_uid:
            raise InvalidInputError("UPLOAD_MIXED_STUDIES", "every uploaded instance must belong to one study", "data")
        study_uid = study
        sha = hashlib.sha256(data).hexdigest()
        if digests.get(sop, sha) != sha:
            raise InvalidInputError("UPLOAD_DUPLICATE_SOP", "an SOP instance was sent twice with other bytes", "data")
        if sop in digests:
            continue
        if len(digests) >= MAX_INSTANCES:
            raise ResourceExhaustedError("UPLOAD_TOO_MANY", f"at most {MAX_INSTANCES} instances per study", "data")
        digests[sop] = sha
        relative = f"{UPLOADS_DIR}/{uid_key(study)}/{uid_key(series)}/{uid_key(sop)}.dcm"
        atomic_write(store_root / relative, data)
        received.instance_paths.append(relative)
    if not digests:
        raise InvalidInputError("INSTANCES_MISSING", "the upload holds no instance", "data")
    _sync_new_directories(store_root, received.instance_paths)
    received.study_key = uid_key(study_uid)
    received.content_digest = content_digest(digests.items())
    return received


def _sync_new_directories(store_root: Path, relative_paths: list[str]) -> None:
    """fsync the study, uploads and root directories, so that the new series / study folders' entries are durable
    (each file's own folder was synced by :func:`atomic_write`)."""
    folders = {store_root / Path(relative).parent.parent for relative in relative_paths}
    for folder in sorted(folders):
        fsync_directory(folder)
    fsync_directory(store_root / UPLOADS_DIR)
    fsync_directory(store_root)


def _chain(
    head: list[pipeline_pb2.UploadChunk], rest: Iterator[pipeline_pb2.UploadChunk]
) -> Iterator[pipeline_pb2.UploadChunk]:
    yield from head
    yield from rest

"""Export allow-list, keyed study hashes and submission bounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from oncohabitat.common.errors import InvalidInputError, NotFoundError
from oncohabitat.dicomio import identifiers
from oncohabitat.orchestrator.admission import admit_submission
from oncohabitat.orchestrator.destinations import DestinationNotAllowedError, ExportDestinations
from oncohabitat.orchestrator.submission import MAX_MODEL_IDS, check_bounds
from oncohabitat.v1 import pipeline_pb2

KEY = "ab" * 16
ALLOWED = ExportDestinations.from_settings("PACS@10.0.0.5:104", "ARCHIVE=ARCH@10.0.0.6:11112")


def test_requests_name_configured_destinations_only() -> None:
    assert ALLOWED.resolve("") == ""
    assert ALLOWED.resolve("ARCHIVE") == ALLOWED.resolve("ARCH") == ALLOWED.resolve("ARCH@10.0.0.6:11112") == "ARCHIVE"
    assert ALLOWED.address("ARCHIVE") == "ARCH@10.0.0.6:11112"
    assert ALLOWED.address("") == "PACS@10.0.0.5:104"
    for unlisted in ("EVIL@203.0.113.9:104", "PACS@203.0.113.9:104", "x" * 500):
        with pytest.raises(DestinationNotAllowedError):
            ALLOWED.resolve(unlisted)
    with pytest.raises(DestinationNotAllowedError):
        ExportDestinations.from_settings("", "").address("EVIL@203.0.113.9:104")  # a job stored before a change
    with pytest.raises(ValueError):
        ExportDestinations.from_settings("", "no-equals-sign")


def test_study_keys_are_keyed_with_the_deployment_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uid = "1.2.840.113619.2.55.3"
    plain = identifiers.uid_key(uid)
    (tmp_path / "a").write_text("a" * 64)
    (tmp_path / "b").write_text("b" * 64)
    monkeypatch.setenv(identifiers.SECRET_FILE_ENV, str(tmp_path / "a"))
    keyed_a = identifiers.uid_key(uid)
    monkeypatch.setenv(identifiers.SECRET_FILE_ENV, str(tmp_path / "b"))
    keyed_b = identifiers.uid_key(uid)
    assert len({plain, keyed_a, keyed_b}) == 3 and all(len(k) == 32 for k in (keyed_a, keyed_b))
    assert identifiers.uid_key(uid, b"a" * 64) == keyed_a


def test_submissions_by_reference_resolve_the_held_study(tmp_path: Path) -> None:
    study = tmp_path / "instances" / KEY / "s1"
    study.mkdir(parents=True)
    (study / "i1.dcm").write_bytes(b"one")
    request = pipeline_pb2.SubmitStudyRequest(study_key=KEY, export_destination="ARCH")
    payload, digest = admit_submission(request, tmp_path, ALLOWED, platform_caller=False)
    assert payload["instance_paths"] == [f"instances/{KEY}/s1/i1.dcm"] and payload["export_destination"] == "ARCHIVE"
    assert len(digest) == 64
    with pytest.raises(NotFoundError):
        admit_submission(pipeline_pb2.SubmitStudyRequest(study_key="cd" * 16), tmp_path, ALLOWED, False)
    with pytest.raises(InvalidInputError, match="study_key"):
        admit_submission(
            pipeline_pb2.SubmitStudyRequest(study_key=KEY, instance_paths=["x/y.dcm"]), tmp_path, ALLOWED, False
        )


def test_platform_paths_must_be_in_the_studys_own_directory(tmp_path: Path) -> None:
    other = f"instances/{'cd' * 16}/s/i.dcm"
    request = pipeline_pb2.SubmitStudyRequest(study_key=KEY, content_digest="0" * 64, instance_paths=[other])
    with pytest.raises(InvalidInputError) as refused:
        admit_submission(request, tmp_path, ALLOWED, platform_caller=True)
    assert refused.value.reason == "INSTANCE_PATH_INVALID"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"model_ids": ["m"] * (MAX_MODEL_IDS + 1)}, "model_ids"),
        ({"model_ids": ["x" * 200]}, "model_ids"),
        ({"instance_paths": ["a" * 300]}, "instance_paths"),
        ({"export_destination": "x" * 65}, "export_destination"),
        ({"dce_classification_json": "x" * (9 * 1024 * 1024)}, ""),
        ({"content_digest": "0" * 65}, "content_digest"),
    ],
)
def test_every_field_is_bounded(fields: dict[str, object], field: str) -> None:
    request = pipeline_pb2.SubmitStudyRequest(study_key=KEY, **fields)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError) as refused:
        check_bounds(request)
    assert refused.value.field == field

"""Study life cycle: expected-series rules, DCE classification at completion, hand-off policy,
"study updated" late-arrival policies, index migration and the admin summary built from it."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from oncohabitat.listener import status
from oncohabitat.listener.classify import DceStudyClassifier
from oncohabitat.listener.completion import (
    CompletionMonitor,
    ExpectedSeriesRule,
    HandoffPolicy,
    parse_expected_series,
)
from oncohabitat.listener.errors import ListenerConfigError
from oncohabitat.listener.index import SCHEMA_VERSION, LatePolicy, StudyIndex, StudyState
from oncohabitat.listener.outbox import Outbox
from oncohabitat.listener.servicer import study_summary
from oncohabitat.listener.storage import INDEX_FILE, InstanceStore
from oncohabitat.phantom import PhantomStudy, generate_study
from oncohabitat.v1 import common_pb2
from tests.unit.test_listener_intake import event_of
from tests.unit.test_listener_storage import receive

QUIET_S = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> PhantomStudy:
    return generate_study(tmp_path_factory.mktemp("dce") / "study", size="small", seed=3, layout="per-phase")


class Node:
    """Index + store + classifier on one root with a settable clock."""

    def __init__(self, root: Path, clock: Clock, late_policy: LatePolicy = LatePolicy.RERUN) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.index = StudyIndex(root / INDEX_FILE, late_policy=late_policy)
        self.store = InstanceStore(root, self.index, clock=clock)
        self.classifier = DceStudyClassifier(self.index, root)

    def ingest(self, paths: list[Path]) -> str:
        key = ""
        for path in paths:
            result = receive(self.store, event_of(path))  # type: ignore[arg-type]
            assert result.status == status.SUCCESS and result.study_key is not None
            key = result.study_key
        return key

    def close(self) -> None:
        self.store.close()
        self.index.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def node(tmp_path: Path, clock: Clock) -> Iterator[Node]:
    handle = Node(tmp_path / "root", clock)
    yield handle
    handle.close()


def all_files(study: PhantomStudy) -> list[Path]:
    return [p for phase in study.phase_files for p in phase]


def test_expected_series_complete_before_the_quiet_period(node: Node, clock: Clock, phantom: PhantomStudy) -> None:
    rules = parse_expected_series(r"post 5:32;pre")
    assert rules == (ExpectedSeriesRule("post 5", 32), ExpectedSeriesRule("pre", 1))
    monitor = CompletionMonitor(
        node.index, quiet_period_s=QUIET_S, settle_period_s=1.0, expected=rules, clock=clock, classifier=node.classifier
    )
    key = node.ingest([p for phase in phantom.phase_files[:-1] for p in phase])
    clock.now += 1.5
    assert monitor.run_once() == []  # last phase missing: wait for the quiet period
    node.ingest(list(phantom.phase_files[-1][:10]))
    clock.now += 1.5
    assert monitor.run_once() == []  # last phase incomplete (10 < 32 instances)
    node.ingest(list(phantom.phase_files[-1][10:]))
    clock.now += 0.5
    assert monitor.run_once() == []  # not settled yet
    clock.now += 0.6
    assert monitor.run_once() == [key]
    study = node.index.get_study(key)
    assert study is not None and study.state is StudyState.COMPLETE and study.eligible is True
    with pytest.raises(ListenerConfigError):
        parse_expected_series("([unclosed")


def test_classification_is_recorded_and_shown_by_the_admin_summary(
    node: Node, clock: Clock, phantom: PhantomStudy
) -> None:
    monitor = CompletionMonitor(node.index, quiet_period_s=QUIET_S, clock=clock, classifier=node.classifier)
    key = node.ingest(all_files(phantom))
    clock.now += QUIET_S
    assert monitor.run_once() == [key]
    study = node.index.get_study(key)
    assert study is not None and study.state is StudyState.COMPLETE
    classification = json.loads(study.classification)
    assert classification["reason_code"] == "ELIGIBLE" and classification["layout"] == "per-phase"
    summary = study_summary(study, node.index.instances(key))
    assert summary.reason.startswith("ELIGIBLE: 6 phases")
    phases = sorted((p for s in summary.series for p in s.phases), key=lambda p: p.index)
    assert [p.index for p in phases] == list(range(6))
    assert [round(p.time_offset_s) for p in phases] == [round(t) for t in phantom.phase_times_s]
    after_injection = [round(t - phantom.injection_time_s) for t in phantom.phase_times_s]
    assert all(p.HasField("time_after_injection_s") for p in phases)
    assert [round(p.time_after_injection_s) for p in phases] == after_injection
    assert phases[0].role == common_pb2.PHASE_ROLE_PRE_CONTRAST
    assert {p.role for p in phases[1:]} == {common_pb2.PHASE_ROLE_POST_CONTRAST}
    assert {s.classification for s in summary.series} == {"dynamic-phase"}
    assert all(s.series_key and len(s.series_key) == 32 for s in summary.series)
    assert phantom.study_instance_uid not in str(summary)


def test_ineligible_study_is_rejected_with_its_reason_under_the_eligible_policy(
    node: Node, clock: Clock, phantom: PhantomStudy, shared_data: Path
) -> None:
    monitor = CompletionMonitor(
        node.index,
        quiet_period_s=QUIET_S,
        clock=clock,
        classifier=node.classifier,
        handoff_policy=HandoffPolicy.ELIGIBLE,
    )
    mr = sorted((shared_data / "ibsi/ibsi_validation/dicom/STS_001/MR_T1/image").glob("*.dcm"))
    key = node.ingest(mr)
    clock.now += QUIET_S
    assert monitor.run_once() == [key]
    study = node.index.get_study(key)
    assert study is not None and study.state is StudyState.REJECTED and study.eligible is False
    assert study.reason.startswith("not eligible: NO_DYNAMIC_SERIES")
    outbox = Outbox(node.index, node.root, lambda *_: "never")
    assert outbox.run_once() == 0  # rejected studies are not handed off
    all_policy = CompletionMonitor(node.index, quiet_period_s=QUIET_S, clock=clock, classifier=node.classifier)
    two_phases = node.ingest([p for phase in phantom.phase_files[:2] for p in phase])
    clock.now += QUIET_S
    assert all_policy.run_once() == [two_phases]
    handed = node.index.get_study(two_phases)
    assert handed is not None and handed.state is StudyState.COMPLETE and handed.eligible is False
    assert json.loads(handed.classification)["reason_code"] == "TOO_FEW_PHASES"


def test_late_instance_reruns_by_default_and_identical_resend_does_nothing(
    node: Node, clock: Clock, phantom: PhantomStudy
) -> None:
    monitor = CompletionMonitor(node.index, quiet_period_s=QUIET_S, clock=clock)
    outbox = Outbox(node.index, node.root, lambda key, digest, paths, rerun=False: f"job-{digest[:8]}", clock=clock)
    key = node.ingest(all_files(phantom)[:-1])
    clock.now += QUIET_S
    monitor.run_once()
    assert outbox.run_once() == 1
    node.ingest(all_files(phantom)[:5])  # byte-identical re-send
    assert node.index.get_study(key).state is StudyState.HANDED_OFF  # type: ignore[union-attr]
    node.ingest(all_files(phantom)[-1:])  # a late instance
    study = node.index.get_study(key)
    assert study is not None and study.state is StudyState.RECEIVING and study.updates == 1
    assert [e.event for e in node.index.audit_events(key)] == ["study_updated"]
    clock.now += QUIET_S
    monitor.run_once()
    assert outbox.run_once() == 1
    final = node.index.get_study(key)
    assert (
        final is not None and final.state is StudyState.HANDED_OFF and final.instance_count == len(all_files(phantom))
    )


def test_hold_policy_keeps_the_result_and_counts_the_late_instance(
    tmp_path: Path, clock: Clock, phantom: PhantomStudy
) -> None:
    node = Node(tmp_path / "hold", clock, LatePolicy.HOLD)
    try:
        monitor = CompletionMonitor(node.index, quiet_period_s=QUIET_S, clock=clock)
        calls: list[int] = []
        outbox = Outbox(
            node.index, node.root, lambda k, d, paths, rerun=False: calls.append(len(paths)) or f"job-{d[:8]}"
        )
        key = node.ingest(all_files(phantom)[:-1])
        clock.now += QUIET_S
        monitor.run_once()
        outbox.run_once()
        node.ingest(all_files(phantom)[-1:])
        study = node.index.get_study(key)
        assert study is not None and study.state is StudyState.HANDED_OFF
        assert (study.late_instances, study.updates) == (1, 1)
        assert "1 late instance(s) held" in study.reason
        clock.now += QUIET_S
        assert monitor.run_once() == [] and outbox.run_once() == 0  # not re-run by itself, not dropped either
        assert outbox.resubmit(key) is not None
        assert calls == [len(all_files(phantom)) - 1, len(all_files(phantom))]
    finally:
        node.close()


def test_version_1_index_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / INDEX_FILE
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE studies (study_key TEXT PRIMARY KEY, study_uid TEXT NOT NULL UNIQUE, state TEXT NOT NULL,"
            " first_received_at REAL NOT NULL, last_received_at REAL NOT NULL,"
            " instance_count INTEGER NOT NULL DEFAULT 0, bytes_stored INTEGER NOT NULL DEFAULT 0,"
            " completed_at REAL, handed_off_at REAL, job_id TEXT,"
            " reason TEXT NOT NULL DEFAULT '', content_digest TEXT, handoff_attempts INTEGER NOT NULL DEFAULT 0,"
            " next_handoff_at REAL, conflicts INTEGER NOT NULL DEFAULT 0);"
            "CREATE TABLE instances (sop_uid TEXT PRIMARY KEY, study_key TEXT NOT NULL, series_key TEXT NOT NULL,"
            " series_uid TEXT NOT NULL, sop_class_uid TEXT NOT NULL, modality TEXT NOT NULL, path TEXT NOT NULL,"
            " sha256 TEXT NOT NULL, size INTEGER NOT NULL, received_at REAL NOT NULL);"
            "INSERT INTO studies (study_key, study_uid, state, first_received_at, last_received_at)"
            " VALUES ('k', '1.2', 'HANDED_OFF', 1, 2);"
            "PRAGMA user_version=1;"
        )
    index = StudyIndex(path)
    try:
        study = index.get_study("k")
        assert study is not None and study.state is StudyState.HANDED_OFF
        assert (study.late_instances, study.classification, study.eligible) == (0, "", None)
        assert index.audit_events() == []
    finally:
        index.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_unreadable_files_give_a_classification_failure(node: Node, clock: Clock, phantom: PhantomStudy) -> None:
    key = node.ingest(list(phantom.phase_files[0][:2]))
    for record in node.index.instances(key):
        (node.root / record.path).write_bytes(b"not dicom")
    verdict = node.classifier(key)
    assert not verdict.eligible and verdict.reason_code == "NO_MR_IMAGES"  # unreadable files are skipped

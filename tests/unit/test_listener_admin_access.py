"""Admin API servicer (list, show classification, resubmit), access policy, disk guard, TLS configuration,
structured audit events."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from oncohabitat.common.errors import InvalidInputError, NotFoundError, PreconditionError
from oncohabitat.listener import audit, status
from oncohabitat.listener.access import AccessPolicy, parse_networks
from oncohabitat.listener.classify import DceStudyClassifier
from oncohabitat.listener.completion import CompletionMonitor
from oncohabitat.listener.diskguard import DiskGuard
from oncohabitat.listener.errors import ListenerConfigError
from oncohabitat.listener.index import StudyIndex
from oncohabitat.listener.outbox import Outbox
from oncohabitat.listener.servicer import ListenerAdminServicer
from oncohabitat.listener.settings import ListenerSettings
from oncohabitat.listener.storage import INDEX_FILE, InstanceStore
from oncohabitat.listener.tlsconfig import TlsConfig, server_context
from oncohabitat.listener.wiring import tls_config
from oncohabitat.phantom import generate_study
from oncohabitat.v1 import common_pb2, listener_pb2


class Clock:
    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[tuple[ListenerAdminServicer, InstanceStore, Clock, list[str]]]:
    root = tmp_path / "root"
    root.mkdir()
    clock = Clock()
    index = StudyIndex(root / INDEX_FILE)
    store = InstanceStore(root, index, clock=clock)
    calls: list[str] = []

    def handoff(key: str, digest: str, _paths: Sequence[Path], rerun: bool = False) -> str:
        calls.append(f"{key} rerun" if rerun else key)
        return f"job-{digest[:6]}"

    outbox = Outbox(index, root, handoff, clock=clock)
    monitor = CompletionMonitor(index, quiet_period_s=1.0, clock=clock, classifier=DceStudyClassifier(index, root))
    study = generate_study(tmp_path / "phantom", size="small", seed=8, layout="multi-phase")
    for path in sorted(study.dicom_dir.rglob("*.dcm")):
        assert store.store_part10(path.read_bytes()).status == status.SUCCESS
    servicer = ListenerAdminServicer(index, outbox)
    yield servicer, store, clock, calls
    clock.now += 2.0
    monitor.run_once()
    store.close()
    index.close()


def test_admin_lists_shows_and_resubmits(admin: tuple[ListenerAdminServicer, InstanceStore, Clock, list[str]]) -> None:
    servicer, store, clock, calls = admin
    context: Any = None
    (listed,) = servicer.ListStudies(listener_pb2.ListStudiesRequest(), context).studies
    assert listed.state == listener_pb2.STUDY_STATE_RECEIVING and listed.instance_count == 192
    with pytest.raises(PreconditionError):
        servicer.ResubmitStudy(listener_pb2.ResubmitStudyRequest(study_key=listed.study_key), context)
    shown = servicer.GetStudy(listener_pb2.GetStudyRequest(study_key=listed.study_key), context)
    assert [s.reason for s in shown.series] == ["by SOP class (not classified yet)"]
    clock.now += 2.0
    CompletionMonitor(
        store.index, quiet_period_s=1.0, clock=clock, classifier=DceStudyClassifier(store.index, store.root)
    ).run_once()
    shown = servicer.GetStudy(listener_pb2.GetStudyRequest(study_key=listed.study_key), context)
    assert shown.state == listener_pb2.STUDY_STATE_COMPLETE
    (series,) = shown.series
    assert series.classification == "dynamic-multiphase" and "TemporalPositionIdentifier" in series.reason
    assert [p.index for p in series.phases] == [0, 1, 2, 3, 4, 5]
    assert series.phases[0].role == common_pb2.PHASE_ROLE_PRE_CONTRAST and series.phases[3].time_offset_s == 240.0
    job = servicer.ResubmitStudy(listener_pb2.ResubmitStudyRequest(study_key=listed.study_key), context).job_id
    assert job.startswith("job-") and calls == [f"{listed.study_key} rerun"]  # an operator's re-run
    completed = servicer.ListStudies(
        listener_pb2.ListStudiesRequest(state=listener_pb2.STUDY_STATE_HANDED_OFF), context
    ).studies
    assert [s.job_id for s in completed] == [job]
    with pytest.raises(InvalidInputError):
        servicer.GetStudy(listener_pb2.GetStudyRequest(study_key="../etc"), context)
    with pytest.raises(NotFoundError):
        servicer.GetStudy(listener_pb2.GetStudyRequest(study_key="0" * 32), context)


def test_access_policy() -> None:
    policy = AccessPolicy(frozenset({"PACS"}), parse_networks(["10.0.0.0/8", "::1"]), "ONCO")
    assert policy.peer_allowed("10.1.2.3") and policy.peer_allowed("::1") and policy.peer_allowed("::ffff:10.0.0.1")
    assert not policy.peer_allowed("192.168.0.1") and not policy.peer_allowed("not-an-ip")
    assert policy.calling_allowed("PACS ") and not policy.calling_allowed("OTHER")
    assert policy.called_allowed("ONCO") and not policy.called_allowed("ONCOHABITAT")
    open_policy = AccessPolicy()
    assert (
        open_policy.peer_allowed("1.2.3.4") and open_policy.calling_allowed("ANY") and open_policy.called_allowed("X")
    )
    with pytest.raises(ListenerConfigError):
        parse_networks(["10.0.0.0/33"])


def test_disk_guard_caches_measurements_and_logs_transitions(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    now = {"t": 0.0}
    free = {"b": 100}
    probes: list[int] = []

    def probe(_path: Path) -> int:
        probes.append(free["b"])
        return free["b"]

    guard = DiskGuard(tmp_path, 50, interval_s=1.0, probe=probe, clock=lambda: now["t"])
    with caplog.at_level(logging.INFO, logger="oncohabitat.listener.diskguard"):
        assert guard.accepting()
        free["b"] = 10
        assert guard.accepting()  # cached for the interval
        now["t"] = 1.0
        assert not guard.accepting() and not guard.accepting()
        now["t"] = 2.5
        free["b"] = 60
        assert guard.accepting()
    assert probes == [100, 10, 60]
    assert REGISTRY.get_sample_value("oncohabitat_listener_disk_free_bytes") == 60  # the last measurement
    assert REGISTRY.get_sample_value("oncohabitat_listener_disk_low") == 0
    now["t"] = 4.0
    free["b"] = 5
    assert not guard.accepting()
    assert REGISTRY.get_sample_value("oncohabitat_listener_disk_free_bytes") == 5
    assert REGISTRY.get_sample_value("oncohabitat_listener_disk_low") == 1
    messages = [r.getMessage() for r in caplog.records]
    assert sum("below the watermark" in m for m in messages) == 2 and sum("back above" in m for m in messages) == 1
    assert DiskGuard(tmp_path, 0, probe=lambda _p: 0).accepting()  # watermark 0 = off


def test_tls_configuration_errors_are_clear(tmp_path: Path) -> None:
    missing = TlsConfig(tmp_path / "none.pem", tmp_path / "none.key")
    with pytest.raises(ListenerConfigError, match="cannot be loaded"):
        server_context(missing)
    with pytest.raises(ListenerConfigError, match="CA file"):
        server_context(TlsConfig(tmp_path / "a", tmp_path / "b", None, require_client_cert=True))


@pytest.mark.parametrize(
    "tls_settings",
    [{"tls_key_file": "server.key"}, {"tls_ca_file": "ca.pem"}, {"tls_require_client_cert": True}],
)
def test_tls_settings_without_a_certificate_refuse_to_start(tmp_path: Path, tls_settings: dict[str, Any]) -> None:
    """Some TLS setting but no certificate: a start-up error, never plain TCP in its place."""
    settings = ListenerSettings(store_dir=tmp_path, data_dir=tmp_path, **tls_settings)
    with pytest.raises(ListenerConfigError, match="no server certificate"):
        tls_config(settings)
    assert tls_config(ListenerSettings(store_dir=tmp_path, data_dir=tmp_path)) is None  # no TLS setting: plain TCP
    key_in_cert = tls_config(ListenerSettings(store_dir=tmp_path, data_dir=tmp_path, tls_cert_file=tmp_path / "s.pem"))
    assert key_in_cert is not None and key_in_cert.key_file is None


def test_audit_events_are_structured_and_free_of_patient_fields(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="oncohabitat.listener.audit"):
        audit.emit("association_accepted", calling_ae="PACS", peer_ip="10.0.0.1", contexts_accepted=3)
    (record,) = caplog.records
    assert record.audit_event == "association_accepted"  # type: ignore[attr-defined]
    assert (record.audit_calling_ae, record.audit_peer_ip) == ("PACS", "10.0.0.1")  # type: ignore[attr-defined]
    assert record.audit_contexts_accepted == 3  # type: ignore[attr-defined]

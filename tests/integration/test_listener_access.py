"""ListenerSCP's access control over real associations: DICOM TLS, calling-AE and peer allow-lists, association
limits (total and per peer), idle/ACSE/DIMSE timeouts, audit events and metrics."""

from __future__ import annotations

import json
import logging
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest
from prometheus_client import REGISTRY
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, MRImageStorage, Verification  # type: ignore[attr-defined]

from oncohabitat.dicomio.identifiers import uid_key
from oncohabitat.dicomio.scu import send_instances
from oncohabitat.listener import pdu_io, status
from oncohabitat.listener.index import StudyIndex
from oncohabitat.listener.scp import ListenerSCP
from oncohabitat.listener.storage import INDEX_FILE, InstanceStore
from tests.conftest import require_tool
from tests.support.dcmtk import storescu
from tests.support.dimse_commands import echo_command
from tests.support.raw_peer import AssociationRejectedError, RawPeer, encode_associate_request

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:The value length:UserWarning"),
]


def _openssl(*args: str) -> None:
    subprocess.run([require_tool("openssl"), *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (openssl, EC P-256)."""
    d = tmp_path_factory.mktemp("pki")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.pem"),
    )
    for name, extra in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        _openssl(
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            str(d / f"{name}.key"),
            "-out",
            str(d / f"{name}.csr"),
        )
        (d / f"{name}.ext").write_text(extra + "\n")
        _openssl(
            "x509",
            "-req",
            "-in",
            str(d / f"{name}.csr"),
            "-CA",
            str(d / "ca.pem"),
            "-CAkey",
            str(d / "ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(d / f"{name}.ext"),
            "-out",
            str(d / f"{name}.pem"),
        )
    return {p.stem + p.suffix: p for p in d.iterdir()}


def _tls_scp(
    tmp_path: Path, pki: dict[str, Path], require_client: bool, key_in_cert: bool = False
) -> tuple[ListenerSCP, InstanceStore]:
    """A started TLS listener; ``key_in_cert``: its certificate and key in one PEM file (no key file)."""
    from oncohabitat.listener.tlsconfig import TlsConfig, server_context

    index = StudyIndex(tmp_path / INDEX_FILE)
    store = InstanceStore(tmp_path, index)
    if key_in_cert:
        combined = tmp_path / "server-with-key.pem"
        combined.write_bytes(pki["server.pem"].read_bytes() + pki["server.key"].read_bytes())
        config = TlsConfig(combined, None, pki["ca.pem"], require_client)
    else:
        config = TlsConfig(pki["server.pem"], pki["server.key"], pki["ca.pem"], require_client)
    listener = ListenerSCP(store, ae_title="ONCOTEST", host="127.0.0.1", port=0, tls=server_context(config))
    listener.start()
    return listener, store


def _client_context(pki: dict[str, Path], with_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki["ca.pem"]))
    if with_cert:
        context.load_cert_chain(pki["client.pem"], pki["client.key"])
    return context


@pytest.mark.parametrize(("require_client", "key_in_cert"), [(False, False), (True, False), (True, True)])
def test_dicom_tls_with_optional_or_required_client_certificates(
    tmp_path: Path, pki: dict[str, Path], require_client: bool, key_in_cert: bool, sts_ct_dir: Path
) -> None:
    listener, store = _tls_scp(tmp_path, pki, require_client, key_in_cert)
    try:
        ae = AE(ae_title="TESTSCU")
        ae.add_requested_context(Verification)
        ae.add_requested_context(CTImageStorage)
        ok = ae.associate(
            "127.0.0.1", listener.port, ae_title="ONCOTEST", tls_args=(_client_context(pki, True), "127.0.0.1")
        )
        assert ok.is_established
        assert ok.send_c_store(pydicom.dcmread(sts_ct_dir / "image" / "000003.dcm")).Status == 0  # type: ignore[attr-defined]
        ok.release()
        anonymous = ae.associate(
            "127.0.0.1", listener.port, ae_title="ONCOTEST", tls_args=(_client_context(pki, False), "127.0.0.1")
        )
        assert anonymous.is_established is (not require_client)
        if anonymous.is_established:
            anonymous.release()
        plain = ae.associate("127.0.0.1", listener.port, ae_title="ONCOTEST")  # no TLS at all
        assert not plain.is_established
        assert len(list((tmp_path / "instances").rglob("*.dcm"))) == 1
    finally:
        listener.stop()
        store.close()
        store.index.close()


def test_stopping_the_listener_closes_open_tls_associations(tmp_path: Path, pki: dict[str, Path]) -> None:
    """stop() ends a TLS association that is still open (its raw socket was detached by the TLS wrap)."""
    listener, store = _tls_scp(tmp_path, pki, require_client=False)
    try:
        peer = RawPeer("127.0.0.1", listener.port, tls=_client_context(pki, True))
        assert peer.associate([(Verification, [ImplicitVRLittleEndian])], called_ae="ONCOTEST")
        assert listener.active_associations == 1
        started = time.monotonic()
        listener.stop(timeout_s=10.0)
        assert time.monotonic() - started < 5.0  # not the join timeout: the association ended
        assert listener.active_associations == 0
        assert peer.closed_by_peer(5.0)
        assert not [t for t in threading.enumerate() if t.name == "dicom-association"]
    finally:
        listener.stop()
        store.close()
        store.index.close()


@contextmanager
def running_scp(tmp_path: Path, **kwargs: object) -> Iterator[ListenerSCP]:
    """A started ListenerSCP (``kwargs``: its options) on a fresh store under ``tmp_path``; stopped after."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    index = StudyIndex(tmp_path / INDEX_FILE)
    store = InstanceStore(tmp_path, index)
    listener = ListenerSCP(store, ae_title="ONCOTEST", host="127.0.0.1", port=0, **kwargs)  # type: ignore[arg-type]
    listener.start()
    try:
        yield listener
    finally:
        listener.stop()
        store.close()
        index.close()


def echo_succeeds(port: int, calling_ae: str = "TESTSCU") -> bool:
    """Associate as ``calling_ae``, C-ECHO, release: True when the echo succeeded."""
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="ONCOTEST")
    if not assoc.is_established:
        return False
    succeeded = assoc.send_c_echo().Status == 0  # type: ignore[attr-defined]
    assoc.release()
    return bool(succeeded)


def test_calling_ae_and_peer_allow_lists_reject_unknown_callers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from oncohabitat.listener.access import AccessPolicy, parse_networks

    refused = "oncohabitat_listener_associations_total"
    before = REGISTRY.get_sample_value(refused, {"outcome": "calling_ae_not_allowed"}) or 0.0
    with running_scp(
        tmp_path / "ae", access=AccessPolicy(calling_ae_titles=frozenset({"PACS"})), require_called_aet=True
    ) as listener:
        ae = AE(ae_title="INTRUDER")
        ae.add_requested_context(Verification)
        with caplog.at_level(logging.INFO, logger="oncohabitat.listener.audit"):
            rejected = ae.associate("127.0.0.1", listener.port, ae_title="ONCOTEST")
        assert rejected.is_rejected
        (event,) = [r for r in caplog.records if getattr(r, "audit_event", "") == "association_rejected"]
        assert (event.audit_calling_ae, event.audit_peer_ip) == ("INTRUDER", "127.0.0.1")  # type: ignore[attr-defined]
        assert event.audit_reason == "calling_ae_not_allowed"  # type: ignore[attr-defined]
        assert REGISTRY.get_sample_value(refused, {"outcome": "calling_ae_not_allowed"}) == before + 1
        pacs = AE(ae_title="PACS")
        pacs.add_requested_context(Verification)
        wrong_called = pacs.associate("127.0.0.1", listener.port, ae_title="SOMEONE")
        assert wrong_called.is_rejected
        assert echo_succeeds(listener.port, "PACS")
    with running_scp(tmp_path / "ip", access=AccessPolicy(peer_networks=parse_networks(["10.0.0.0/8"]))) as listener:
        peer = RawPeer("127.0.0.1", listener.port, timeout_s=5)
        assert peer.closed_by_peer(5.0)  # dropped before any byte is read
        peer.close()
    allowed = AccessPolicy(peer_networks=parse_networks(["10.0.0.0/8", "127.0.0.0/8"]))
    with running_scp(tmp_path / "ip-ok", access=allowed) as listener:
        assert echo_succeeds(listener.port, "PACS")


def test_association_limit_rejects_transiently_and_recovers(tmp_path: Path) -> None:
    with running_scp(tmp_path, maximum_associations=2) as listener:
        ae = AE(ae_title="TESTSCU")
        ae.add_requested_context(Verification)
        first = ae.associate("127.0.0.1", listener.port, ae_title="ONCOTEST")
        second = ae.associate("127.0.0.1", listener.port, ae_title="ONCOTEST")
        assert first.is_established and second.is_established
        peer = RawPeer("127.0.0.1", listener.port, timeout_s=5)
        with pytest.raises(AssociationRejectedError) as busy:
            peer.associate([(Verification, [ImplicitVRLittleEndian])], called_ae="ONCOTEST")
        assert (busy.value.result, busy.value.source, busy.value.diagnostic) == (2, 3, 2)
        peer.close()
        first.release()
        deadline = time.monotonic() + 5
        while listener.active_associations > 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert echo_succeeds(listener.port)
        second.release()


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout_s`` (generous: the machine may be busy)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.02)


def idle_peer(port: int, source_ip: str = "127.0.0.1") -> RawPeer:
    """An association from ``source_ip`` that sends nothing after its request (raises if rejected)."""
    peer = RawPeer("127.0.0.1", port, timeout_s=30, source_ip=source_ip)
    try:
        peer.associate([(Verification, [ImplicitVRLittleEndian])], called_ae="ONCOTEST")
    except BaseException:
        peer.close()
        raise
    return peer


def audit_events(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "audit_event", "") == event]


def test_one_peer_address_cannot_hold_every_association_slot(
    tmp_path: Path, sts_ct_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 21: 12 idle associations from one address hold 4 of the 10 slots (the per-peer default);
    the other 8 are refused at once as transient "local limit exceeded", and a storescu push from
    another address gets through meanwhile."""
    refused = "oncohabitat_listener_associations_total"
    before = REGISTRY.get_sample_value(refused, {"outcome": "peer_limit"}) or 0.0
    squatters: list[RawPeer] = []
    rejections: list[tuple[int, int, int]] = []
    with (
        running_scp(tmp_path, maximum_associations=10, maximum_associations_per_peer=4, idle_timeout_s=600.0) as scp,
        caplog.at_level(logging.INFO, logger="oncohabitat.listener.audit"),
    ):
        try:
            for _ in range(12):
                try:
                    squatters.append(idle_peer(scp.port, source_ip="127.0.0.2"))
                except AssociationRejectedError as exc:
                    rejections.append((exc.result, exc.source, exc.diagnostic))
            assert len(squatters) == 4
            assert rejections == [(2, 3, 2)] * 8  # transient, service provider (presentation), local limit exceeded
            assert scp.active_associations == 4
            pushed = storescu(scp.port, [sts_ct_dir / "image" / "000001.dcm"], called_ae="ONCOTEST")
            assert pushed.returncode == 0, pushed.stderr
            assert echo_succeeds(scp.port)
            wait_until(lambda: scp.active_associations == 4, "only the squatters' associations are left")
        finally:
            for peer in squatters:
                peer.close()
    rejected = audit_events(caplog, "association_rejected")
    assert [(r.audit_reason, r.audit_peer_ip) for r in rejected] == [("peer_limit", "127.0.0.2")] * 8  # type: ignore[attr-defined]
    assert REGISTRY.get_sample_value(refused, {"outcome": "peer_limit"}) == before + 8


def test_the_per_peer_limit_is_configurable_and_frees_with_the_peer(tmp_path: Path) -> None:
    """Limit 2: the third association from 127.0.0.1 is refused (transient, local limit exceeded), one
    from 127.0.0.2 is accepted; once one of the first two is released, 127.0.0.1 is accepted again."""
    with running_scp(tmp_path, maximum_associations=5, maximum_associations_per_peer=2) as scp:
        first, second = idle_peer(scp.port), idle_peer(scp.port)
        try:
            with pytest.raises(AssociationRejectedError) as limited:
                idle_peer(scp.port)
            assert (limited.value.result, limited.value.source, limited.value.diagnostic) == (2, 3, 2)
            other = idle_peer(scp.port, source_ip="127.0.0.2")
            assert other.release()
            assert first.release()
            wait_until(lambda: scp.active_associations <= 1, "the released associations' slots are free")
            assert echo_succeeds(scp.port)
        finally:
            for peer in (first, second):
                peer.close()


def test_an_association_that_sends_no_message_is_aborted_after_the_idle_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Established and silent: A-ABORT after IDLE_TIMEOUT_S (not the 60 s network timeout) and the slot is
    free again; an association that sent a message is not idle."""
    aborts = "oncohabitat_listener_association_aborts_total"
    before = REGISTRY.get_sample_value(aborts, {"reason": "idle_timeout"}) or 0.0
    idle_timeout_s = 2.0
    with (
        running_scp(tmp_path, maximum_associations=3, idle_timeout_s=idle_timeout_s, network_timeout_s=60.0) as scp,
        caplog.at_level(logging.INFO, logger="oncohabitat.listener.audit"),
    ):
        started = time.monotonic()
        first = idle_peer(scp.port)
        talking = idle_peer(scp.port)
        talking.send_message(talking.context_for(Verification), echo_command(1), None)  # at once: not idle
        second = idle_peer(scp.port)
        try:
            assert talking.read_response().status == status.SUCCESS
            assert first.read_abort(60.0) and second.read_abort(60.0)
            assert time.monotonic() - started >= idle_timeout_s
            assert first.closed_by_peer(30.0) and second.closed_by_peer(30.0)
            wait_until(lambda: scp.active_associations == 1, "the idle associations' slots are free")
            # the one that sent a C-ECHO outlived the idle timeout and still works
            talking.send_message(talking.context_for(Verification), echo_command(2), None)
            assert talking.read_response().status == status.SUCCESS
            assert talking.release()
            wait_until(lambda: scp.active_associations == 0, "every slot is free")
            assert echo_succeeds(scp.port)
            wait_until(lambda: len(audit_events(caplog, "association_closed")) >= 4, "four closing audit events")
        finally:
            for peer in (first, talking, second):
                peer.close()
    outcomes = sorted(r.audit_close_outcome for r in audit_events(caplog, "association_closed"))  # type: ignore[attr-defined]
    assert outcomes == ["idle_timeout", "idle_timeout", "released", "released"]
    assert REGISTRY.get_sample_value(aborts, {"reason": "idle_timeout"}) == before + 2


def test_silent_and_idle_peers_are_cut_off_by_the_timeouts(tmp_path: Path) -> None:
    with running_scp(tmp_path, acse_timeout_s=0.5, network_timeout_s=0.5) as listener:
        silent = RawPeer("127.0.0.1", listener.port, timeout_s=5)
        started = time.monotonic()
        assert silent.closed_by_peer(5.0)  # never sent A-ASSOCIATE-RQ
        assert time.monotonic() - started < 3.0
        idle = RawPeer("127.0.0.1", listener.port, timeout_s=5)
        idle.associate([(Verification, [ImplicitVRLittleEndian])], called_ae="ONCOTEST")
        started = time.monotonic()
        assert idle.closed_by_peer(5.0)  # established, then silent: aborted after the network timeout
        assert time.monotonic() - started < 3.0
        for peer in (silent, idle):
            peer.close()
        assert echo_succeeds(listener.port)


def test_audit_events_name_ae_ip_and_instances_per_study_without_patient_data(
    scp: tuple[ListenerSCP, InstanceStore], sts_ct_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:

    listener, _ = scp
    files = sorted((sts_ct_dir / "image").glob("*.dcm"))[:3]
    patient_id = str(pydicom.dcmread(files[0], stop_before_pixels=True).PatientID)
    with caplog.at_level(logging.INFO, logger="oncohabitat.listener.audit"):
        send_instances(files, "ONCOTEST", "127.0.0.1", listener.port, calling_ae="MODALITY1", retries=0)
        deadline = time.monotonic() + 5
        while not any(getattr(r, "audit_event", "") == "association_closed" for r in caplog.records):
            assert time.monotonic() < deadline
            time.sleep(0.02)
    (accepted,) = [r for r in caplog.records if getattr(r, "audit_event", "") == "association_accepted"]
    assert (accepted.audit_calling_ae, accepted.audit_peer_ip) == ("MODALITY1", "127.0.0.1")  # type: ignore[attr-defined]
    closed = [r for r in caplog.records if getattr(r, "audit_event", "") == "association_closed"]
    stored = json.loads(closed[0].audit_instances_by_study)  # type: ignore[attr-defined]
    study = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    assert stored == {uid_key(study): 3}
    text = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert patient_id not in text and study not in text


def test_metrics_follow_associations_and_stored_bytes(scp: tuple[ListenerSCP, InstanceStore], sts_ct_dir: Path) -> None:
    listener, store = scp
    files = sorted((sts_ct_dir / "image").glob("*.dcm"))[:3]
    active = "oncohabitat_listener_active_associations"
    stored_bytes = "oncohabitat_listener_bytes_stored_total"
    bytes_before = REGISTRY.get_sample_value(stored_bytes) or 0.0
    active_before = REGISTRY.get_sample_value(active) or 0.0  # process-wide: other tests' listeners count too
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(CTImageStorage, ImplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", listener.port, ae_title="ONCOTEST")
    assert assoc.is_established
    try:
        assert REGISTRY.get_sample_value(active) == active_before + 1
        for path in files:
            assert assoc.send_c_store(pydicom.dcmread(path)).Status == 0  # type: ignore[attr-defined]
    finally:
        assoc.release()
    deadline = time.monotonic() + 5
    while REGISTRY.get_sample_value(active) != active_before:
        assert time.monotonic() < deadline, "the closed association is still counted"
        time.sleep(0.02)
    assert store.flush()
    sizes = 0
    for path in files:
        record = store.index.get_instance(str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID))
        assert record is not None
        sizes += store.path_of(record).stat().st_size
    assert REGISTRY.get_sample_value(stored_bytes) == bytes_before + sizes


def test_echo_only_on_verification_and_one_command_on_one_context(tmp_path: Path) -> None:
    """A C-ECHO on a Storage context is refused (0x0122); command fragments that switch context abort."""
    contexts = [(Verification, [ImplicitVRLittleEndian]), (MRImageStorage, [ImplicitVRLittleEndian])]
    with running_scp(tmp_path) as listener:
        peer = RawPeer("127.0.0.1", listener.port)
        try:
            peer.associate(contexts, called_ae="ONCOTEST")
            peer.send_message(peer.context_for(MRImageStorage), echo_command(1), None)
            assert peer.read_response().status == 0x0122  # SOP class not supported on that context
            peer.send_message(peer.context_for(Verification), echo_command(2), None)
            assert peer.read_response().status == status.SUCCESS
            command = echo_command(3)
            peer.sock.sendall(
                pdu_io.encode_pdata(peer.context_for(Verification), pdu_io.CONTROL_COMMAND, command[:20])
                + pdu_io.encode_pdata(
                    peer.context_for(MRImageStorage), pdu_io.CONTROL_COMMAND | pdu_io.CONTROL_LAST, command[20:]
                )
            )
            peer.sock.settimeout(5.0)
            answer = pdu_io.read_pdu(peer.sock, {pdu_io.P_DATA_TF: 1 << 20, pdu_io.ABORT: 64})
            assert answer.pdu_type == pdu_io.ABORT  # no reply on either context
            assert peer.closed_by_peer(5.0)
        finally:
            peer.close()


def test_a_peer_trickling_its_association_request_is_cut_off_at_the_acse_timeout(tmp_path: Path) -> None:
    """One byte every 0.4 s never waits a whole (1 s) socket timeout, yet the set-up ends after ~1 s:
    the slot is free again for a real peer."""
    request = encode_associate_request([(Verification, [ImplicitVRLittleEndian])], called_ae="ONCOTEST")
    with running_scp(tmp_path, acse_timeout_s=1.0, maximum_associations=1) as listener:
        slow = socket.create_connection(("127.0.0.1", listener.port), timeout=5.0)
        started = time.monotonic()
        closed_after: float | None = None
        try:
            for index in range(len(request) - 1):  # never the last byte
                slow.sendall(request[index : index + 1])
                time.sleep(0.4)
                if time.monotonic() - started > 6.0:
                    break
        except OSError:  # the listener closed the connection
            closed_after = time.monotonic() - started
        finally:
            slow.close()
        assert closed_after is not None and closed_after < 3.0
        assert echo_succeeds(listener.port)

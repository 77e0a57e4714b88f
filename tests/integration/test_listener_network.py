"""ListenerSCP over real associations (pynetdicom SCU) and send_instances against dcmtk storescp."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.dsutils import split_dataset
from pynetdicom.sop_class import CTImageStorage, MRImageStorage, Verification  # type: ignore[attr-defined]

from oncohabitat.listener import status
from oncohabitat.listener.errors import ExportError
from oncohabitat.listener.identifiers import uid_key
from oncohabitat.listener.index import StudyIndex
from oncohabitat.listener.scp import ListenerSCP
from oncohabitat.listener.scu import send_instances
from oncohabitat.listener.storage import INDEX_FILE, InstanceStore
from tests.conftest import free_port, require_tool

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:The value length:UserWarning"),
]


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[tuple[ListenerSCP, InstanceStore]]:
    index = StudyIndex(tmp_path / INDEX_FILE)
    store = InstanceStore(tmp_path, index)
    listener = ListenerSCP(store, ae_title="ONCOTEST", host="127.0.0.1", port=0)
    listener.start()
    yield listener, store
    listener.stop()
    store.close()
    index.close()


def associate(port: int, *contexts: str) -> object:
    ae = AE(ae_title="TESTSCU")
    for context in contexts:
        ae.add_requested_context(context, ImplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="ONCOTEST")
    assert assoc.is_established
    return assoc


def test_echo_store_and_hostile_uid_over_the_wire(scp: tuple[ListenerSCP, InstanceStore], sts_ct_dir: Path) -> None:
    listener, store = scp
    assert listener.port > 0
    ds = pydicom.dcmread(sts_ct_dir / "image" / "000001.dcm")
    assoc = associate(listener.port, Verification, CTImageStorage)
    try:
        assert assoc.send_c_echo().Status == 0x0000  # type: ignore[attr-defined]
        assert assoc.send_c_store(ds).Status == status.SUCCESS  # type: ignore[attr-defined]
        hostile = pydicom.dcmread(sts_ct_dir / "image" / "000002.dcm")
        with pydicom.config.disable_value_validation():
            hostile.StudyInstanceUID = "../../../etc"
        assert assoc.send_c_store(hostile).Status == status.INVALID_UID  # type: ignore[attr-defined]
    finally:
        assoc.release()  # type: ignore[attr-defined]
    assert store.index.get_instance(ds.SOPInstanceUID) is not None
    assert store.index.get_instance(hostile.SOPInstanceUID) is None
    assert [p.name for p in store.root.rglob("*.dcm")] == [f"{uid_key(ds.SOPInstanceUID)}.dcm"]


def test_unsupported_sop_class_is_not_accepted(scp: tuple[ListenerSCP, InstanceStore]) -> None:
    listener, _ = scp
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.7", ImplicitVRLittleEndian)  # Secondary Capture
    ae.add_requested_context(MRImageStorage, ImplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", listener.port, ae_title="ONCOTEST")
    try:
        accepted = {cx.abstract_syntax for cx in assoc.accepted_contexts}
        assert accepted == {MRImageStorage}
    finally:
        assoc.release()


class StoreSCP:
    """dcmtk storescp writing received objects bit-preserving into a directory."""

    def __init__(self, directory: Path, port: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [require_tool("storescp"), "+B", "-od", str(self.directory), "-aet", "PACS", str(self.port)],
            env={**os.environ, "TCP_NODELAY": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        pytest.fail("storescp did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=15)

    def received(self) -> dict[str, Path]:
        files = [p for p in self.directory.iterdir() if p.is_file()]
        return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in files}


def body(path: Path) -> bytes:
    _, offset = split_dataset(path)
    return path.read_bytes()[offset:]


@pytest.fixture
def export_sources(sts_ct_dir: Path) -> list[Path]:
    return [*sorted((sts_ct_dir / "image").glob("*.dcm"))[:8], sts_ct_dir / "mask" / "RS.dcm"]


def test_send_instances_arrive_byte_identical(tmp_path: Path, export_sources: list[Path]) -> None:
    pacs = StoreSCP(tmp_path / "pacs", free_port())
    pacs.start()
    try:
        as_dataset = pydicom.dcmread(export_sources[-1])
        report = send_instances([*export_sources[:-1], as_dataset], "PACS", "127.0.0.1", pacs.port, retries=0)
    finally:
        pacs.stop()
    assert report.sent == len(export_sources) and report.failed_keys == [] and report.attempts == 1
    received = pacs.received()
    assert len(received) == len(export_sources)
    for source in export_sources:
        sop_uid = str(pydicom.dcmread(source, stop_before_pixels=True).SOPInstanceUID)
        assert uid_key(sop_uid) in report.sent_keys
        assert body(received[sop_uid]) == body(source)


def test_send_instances_retries_until_the_peer_is_up(tmp_path: Path, export_sources: list[Path]) -> None:
    pacs = StoreSCP(tmp_path / "pacs", free_port())
    starter = threading.Timer(0.3, pacs.start)
    starter.start()
    try:
        report = send_instances(
            export_sources[:2], "PACS", "127.0.0.1", pacs.port, retries=5, backoff_s=0.4, timeout_s=5
        )
    finally:
        starter.join()
        pacs.stop()
    assert report.sent == 2 and report.attempts >= 2
    assert len(pacs.received()) == 2


def test_send_instances_raises_export_error_when_peer_stays_down(export_sources: list[Path]) -> None:
    with pytest.raises(ExportError) as caught:
        send_instances(export_sources[:3], "PACS", "127.0.0.1", free_port(), retries=2, backoff_s=0.05, timeout_s=2)
    report = caught.value.report
    assert report.sent == 0 and report.attempts == 3 and len(report.failed_keys) == 3


def test_send_instances_refuses_a_dataset_without_transfer_syntax() -> None:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.3.4"
    with pytest.raises(ExportError, match="Transfer Syntax"):
        send_instances([ds], "PACS", "127.0.0.1", 1, retries=0)

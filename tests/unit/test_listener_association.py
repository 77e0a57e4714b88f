"""The data phase's reply/follow-up order: the store's result is answered as returned (durable, no
deferred sync), its after-reply work always runs once, and its final outcome is what the association
counts (audit event), even when the reply cannot be sent."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

from oncohabitat.listener import status
from oncohabitat.listener.access import AccessPolicy
from oncohabitat.listener.association import Association, AssociationConfig
from oncohabitat.listener.cstore import StoreRequest, StoreResult
from oncohabitat.listener.data_phase import DataPhase, PendingStore
from oncohabitat.listener.dimse import C_STORE_RQ, Command
from oncohabitat.listener.index import AddOutcome
from oncohabitat.listener.spool import DatasetSpool

SOP_UID = "1.2.826.0.1.3680043.8.498.7"


class _Socket:
    """Records what is sent; ``fail`` makes every send raise as a reset connection does."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.sent: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        if self.fail:
            raise ConnectionResetError("peer reset the connection")
        self.sent.append(data)


class _Sink:
    """Answers success (stored) at once and records how many replies had left when it was called."""

    def __init__(self, socket: _Socket) -> None:
        self.socket = socket
        self.sent_before_store: int | None = None

    def accepting(self) -> bool:
        return True

    def open_spool(self, sop_class_uid: str, sop_uid: str, transfer_syntax: str) -> DatasetSpool:
        raise AssertionError("not used")

    def refuse(self, reason: str, dimse_status: int) -> StoreResult:
        return StoreResult(dimse_status, None, None, reason)

    def handle_store(self, request: StoreRequest) -> StoreResult:
        self.sent_before_store = len(self.socket.sent)
        return StoreResult(status.SUCCESS, AddOutcome.STORED, "study")


def _association(sock: _Socket, sink: _Sink) -> Association:
    config = AssociationConfig(ae_title="ONCOTEST", access=AccessPolicy(), contexts=())
    association = Association(sock, ("127.0.0.1", 104), config, sink, lambda: "")  # type: ignore[arg-type]
    association._peer_max_pdu = 16_384
    return association


def _data_phase(sock: _Socket, sink: _Sink) -> DataPhase:
    return DataPhase(sock, {}, 16_384, sink)  # type: ignore[arg-type]


def _pending(tmp_path: Path) -> PendingStore:
    command = Command(
        command_field=C_STORE_RQ,
        message_id=1,
        affected_sop_class_uid=MRImageStorage,
        affected_sop_instance_uid=SOP_UID,
        has_dataset=True,
    )
    spool = DatasetSpool(b"", tmp_path, memory_limit=1024, max_bytes=1024)
    return PendingStore(1, command, ExplicitVRLittleEndian, spool)


@pytest.mark.parametrize("reply_fails", [False, True])
def test_the_reply_leaves_only_after_the_store_returned_and_a_failed_reply_ends_the_association(
    tmp_path: Path, reply_fails: bool
) -> None:
    sock = _Socket(fail=reply_fails)
    sink = _Sink(sock)
    data_phase = _data_phase(sock, sink)
    if reply_fails:
        with pytest.raises(ConnectionResetError):
            data_phase._finish_store(_pending(tmp_path))
    else:
        data_phase._finish_store(_pending(tmp_path))
    assert sink.sent_before_store == 0  # nothing was answered before the store returned (durable)
    assert len(sock.sent) == (0 if reply_fails else 1)
    assert data_phase.stats.stored == {"study": 1}


class _ClosableSocket(_Socket):
    def shutdown(self, _how: int) -> None:
        pass

    def close(self) -> None:
        pass

    def settimeout(self, _timeout_s: float | None) -> None:
        pass


def test_the_closing_audit_event_counts_the_final_outcomes_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sock = _ClosableSocket(fail=False)
    sink = _Sink(sock)
    association = _association(sock, sink)
    association._accepted = {1: None}  # type: ignore[dict-item]
    association._data = _data_phase(sock, sink)
    association._data._finish_store(_pending(tmp_path))
    with caplog.at_level(logging.INFO, logger="oncohabitat.listener.audit"):
        association.end("released")
        association.end("released")  # a second end does nothing
    (event,) = _closed_events(caplog)
    assert event.audit_duplicates == 0  # type: ignore[attr-defined]
    assert event.audit_instances_by_study == '{"study": 1}'  # type: ignore[attr-defined]


def _closed_events(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "audit_event", "") == "association_closed"]


def test_the_per_peer_limit_never_exceeds_the_association_limit(tmp_path: Path) -> None:
    from oncohabitat.listener.scp import ListenerSCP
    from oncohabitat.listener.settings import ListenerSettings

    with pytest.raises(ValueError, match="must not exceed"):
        ListenerSettings(max_associations=3, max_associations_per_peer=4)
    assert ListenerSettings(max_associations=3).associations_per_peer == 3  # the default is lowered
    assert ListenerSettings().associations_per_peer == 4
    assert ListenerSettings().idle_timeout_s == 10.0
    sink = _Sink(_Socket(fail=False))
    assert ListenerSCP(sink, maximum_associations=3, maximum_associations_per_peer=8).maximum_associations_per_peer == 3
    assert ListenerSCP(sink, maximum_associations=3).maximum_associations_per_peer == 3

"""The listener's DICOM Storage + Verification SCP (pynetdicom), storing through InstanceStore."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    EnhancedMRImageStorage,
    MRImageStorage,
    RTStructureSetStorage,
    SegmentationStorage,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from oncohabitat.listener import metrics
from oncohabitat.listener.storage import StoreEvent

_LOG = logging.getLogger(__name__)

#: Storage SOP classes accepted by default.
DEFAULT_STORAGE_SOP_CLASSES: tuple[str, ...] = (
    CTImageStorage,
    MRImageStorage,
    EnhancedMRImageStorage,
    RTStructureSetStorage,
    SegmentationStorage,
)
#: Transfer syntaxes accepted by default (uncompressed little endian; deflate not yet).
DEFAULT_TRANSFER_SYNTAXES: tuple[str, ...] = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)

#: Status answered when the store handler fails unexpectedly (pynetdicom's own "handler error" code).
UNEXPECTED_ERROR = 0xC211


class StoreHandler(Protocol):
    """Anything that stores a C-STORE event and returns its DIMSE status (e.g. InstanceStore)."""

    def handle_store(self, event: StoreEvent) -> int: ...  # pragma: no cover


class ListenerSCP:
    """Storage SCP (CT, MR, Enhanced MR, RT Structure Set, Segmentation) + Verification SCP.

    Args:
        store: where received instances go (usually an InstanceStore); answers each C-STORE.
        ae_title: this SCP's AE title (1-16 characters).
        host: address to bind, e.g. ``"0.0.0.0"``.
        port: TCP port (0 = any free port; see :attr:`port` after :meth:`start`).
        sop_classes: storage SOP class UIDs to accept.
        transfer_syntaxes: transfer syntax UIDs to accept for them.
        require_called_aet: refuse associations whose Called AE title is not ``ae_title``.
        maximum_associations: concurrent associations allowed.
        network_timeout_s: idle network timeout of an association, in s.
    """

    def __init__(
        self,
        store: StoreHandler,
        *,
        ae_title: str = "ONCOHABITAT",
        host: str = "0.0.0.0",
        port: int = 11112,
        sop_classes: Sequence[str] = DEFAULT_STORAGE_SOP_CLASSES,
        transfer_syntaxes: Sequence[str] = DEFAULT_TRANSFER_SYNTAXES,
        require_called_aet: bool = False,
        maximum_associations: int = 10,
        network_timeout_s: float = 60.0,
    ) -> None:
        self._store = store
        self._host = host
        self._requested_port = port
        self._server: ThreadedAssociationServer | None = None
        ae = AE(ae_title=ae_title)
        ae.require_called_aet = require_called_aet
        ae.maximum_associations = maximum_associations
        ae.network_timeout = network_timeout_s
        for sop_class in sop_classes:
            ae.add_supported_context(sop_class, list(transfer_syntaxes))
        ae.add_supported_context(Verification, list(DEFAULT_TRANSFER_SYNTAXES))
        self._ae = ae

    @property
    def ae_title(self) -> str:
        """This SCP's AE title."""
        return str(self._ae.ae_title)

    @property
    def port(self) -> int:
        """The bound TCP port (the requested one before :meth:`start`)."""
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._server is not None

    def start(self) -> None:
        """Bind and serve in background threads (returns at once).

        Raises:
            OSError: the address cannot be bound.
        """
        if self._server is not None:
            return
        self._server = self._ae.start_server(
            (self._host, self._requested_port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._handle_store)],
        )
        _LOG.info("DICOM SCP %s listening on %s:%d", self.ae_title, self._host, self.port)

    def stop(self) -> None:
        """Stop accepting, abort open associations and release the port."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server = None
        _LOG.info("DICOM SCP %s stopped", self.ae_title)

    def _handle_store(self, event: Event) -> int:
        try:
            return self._store.handle_store(event)
        except Exception as exc:  # noqa: BLE001 - handler boundary: answer a failure, never crash
            metrics.INSTANCES_REJECTED.labels(reason="internal_error").inc()
            _LOG.error("C-STORE handler failed unexpectedly: %s", type(exc).__name__)
            return UNEXPECTED_ERROR

"""The listener's DICOM Storage + Verification SCP: accept loop, access control and association limits.

One acceptor thread accepts TCP connections; each, plain TCP or TLS, is served by an
:class:`~.association.Association` on its own daemon thread until it closes. A peer outside the
address allow-list is dropped (audited) before any byte is read. At most ``maximum_associations``
are served at once, at most ``maximum_associations_per_peer`` from one address (so one peer cannot
hold every slot); the next few over either limit get a transient A-ASSOCIATE-RJ ("local limit
exceeded"), any further connection is closed at once, so a flood cannot exhaust threads. Below the
disk watermark new associations get a transient rejection and C-STOREs 0xA700 (:mod:`.status`).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Sequence
from functools import partial

from pydicom import uid
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from oncohabitat.listener import audit, metrics
from oncohabitat.listener.access import AccessPolicy
from oncohabitat.listener.association import Association, AssociationConfig
from oncohabitat.listener.cstore import StoreHandler

_LOG = logging.getLogger(__name__)

#: Storage SOP classes accepted by default.
DEFAULT_STORAGE_SOP_CLASSES: tuple[str, ...] = (
    uid.CTImageStorage,
    uid.MRImageStorage,
    uid.EnhancedMRImageStorage,
    uid.RTStructureSetStorage,
    uid.SegmentationStorage,
)
#: Transfer syntaxes accepted by default: uncompressed, deflated (size-checked before inflation)
#: and the compressed syntaxes scanners use, decoded later through pydicom's pixel handlers.
DEFAULT_TRANSFER_SYNTAXES: tuple[str, ...] = (
    uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian,
    uid.DeflatedExplicitVRLittleEndian,
    uid.ExplicitVRBigEndian,
    uid.JPEGLosslessSV1,
    uid.JPEGLossless,
    uid.JPEGBaseline8Bit,
    uid.JPEG2000Lossless,
    uid.JPEG2000,
    uid.JPEGLSLossless,
    uid.JPEGLSNearLossless,
    uid.RLELossless,
)
_VERIFICATION_SYNTAXES = (uid.ImplicitVRLittleEndian, uid.ExplicitVRLittleEndian)
#: Connections over the association limit that still get a polite A-ASSOCIATE-RJ.
_MAX_REJECTORS = 8
_ACCEPT_POLL_S = 0.2


def supported_contexts(sop_classes: Sequence[str], transfer_syntaxes: Sequence[str]) -> tuple[PresentationContext, ...]:
    """Presentation contexts for the storage SOP classes plus Verification."""
    contexts = []
    for abstract, syntaxes in [*((c, transfer_syntaxes) for c in sop_classes), (Verification, _VERIFICATION_SYNTAXES)]:
        context = PresentationContext()
        context.abstract_syntax = uid.UID(abstract)
        context.transfer_syntax = [uid.UID(ts) for ts in syntaxes]
        contexts.append(context)
    return tuple(contexts)


class ListenerSCP:
    """Storage SCP (CT, MR, Enhanced MR, RT Structure Set, Segmentation) + Verification SCP.

    Args:
        ae_title: this SCP's AE title (1-16 characters).
        port: TCP port (0 = any free port; see :attr:`port` after :meth:`start`).
        require_called_aet: refuse associations whose Called AE title is not ``ae_title``.
        access: calling-AE and peer-address allow-lists.
        maximum_associations_per_peer: None = ``maximum_associations``; never more than that.
        The timeouts (s), ``max_pdu_bytes`` and ``tls``: see :class:`~.association.AssociationConfig`.
    """

    def __init__(
        self,
        store: StoreHandler,
        *,
        ae_title: str = "ONCOHABITAT",
        host: str = "0.0.0.0",
        port: int = 11112,
        require_called_aet: bool = False,
        access: AccessPolicy | None = None,
        maximum_associations: int = 10,
        maximum_associations_per_peer: int | None = None,
        network_timeout_s: float = 60.0,
        idle_timeout_s: float = 10.0,
        acse_timeout_s: float = 30.0,
        dimse_timeout_s: float = 30.0,
        max_pdu_bytes: int = 262_144,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if not 1 <= len(ae_title.strip()) <= 16:
            raise ValueError("AE title must have 1-16 characters")
        policy = access or AccessPolicy()
        if require_called_aet:
            policy = AccessPolicy(policy.calling_ae_titles, policy.peer_networks, ae_title)
        self._store = store
        self._host = host
        self._requested_port = port
        self._ae_title = ae_title.strip()
        self.maximum_associations = maximum_associations
        per_peer = maximum_associations_per_peer or maximum_associations
        self.maximum_associations_per_peer = min(per_peer, maximum_associations)
        self._config = AssociationConfig(
            ae_title=self._ae_title,
            access=policy,
            contexts=supported_contexts(DEFAULT_STORAGE_SOP_CLASSES, DEFAULT_TRANSFER_SYNTAXES),
            max_pdu_bytes=max_pdu_bytes,
            acse_timeout_s=acse_timeout_s,
            dimse_timeout_s=dimse_timeout_s,
            network_timeout_s=network_timeout_s,
            idle_timeout_s=idle_timeout_s,
            tls=tls,
        )
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._active = 0
        self._active_by_peer: Counter[str] = Counter()  # served associations per peer address
        self._rejecting = 0
        self._connections: set[socket.socket] = set()
        self._associations: set[Association] = set()
        self._threads: set[threading.Thread] = set()

    @property
    def port(self) -> int:
        """The bound TCP port (the requested one before :meth:`start`)."""
        if self._listener is None:
            return self._requested_port
        return int(self._listener.getsockname()[1])

    @property
    def active_associations(self) -> int:
        """Associations currently being served."""
        with self._lock:
            return self._active

    def start(self) -> None:
        """Bind and serve in background threads (returns at once); OSError when it cannot bind."""
        if self._listener is not None:
            return
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        listener = socket.create_server((self._host, self._requested_port), family=family, backlog=128)
        listener.settimeout(_ACCEPT_POLL_S)
        self._listener = listener
        self._stop.clear()
        self._acceptor = threading.Thread(target=self._accept_loop, name="dicom-acceptor", daemon=True)
        self._acceptor.start()
        _LOG.info("DICOM SCP %s listening on %s:%d", self._ae_title, self._host, self.port)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop accepting, close open associations and release the port."""
        if self._listener is None:
            return
        self._stop.set()
        if self._acceptor is not None:
            self._acceptor.join(timeout_s)
        self._listener.close()
        self._listener = None
        with self._lock:
            connections = list(self._connections)
            associations = list(self._associations)
            threads = list(self._threads)
        for conn in connections:  # not yet wrapped in TLS (after wrapping the raw socket is detached)
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for association in associations:  # plain or TLS
            association.interrupt()
        for thread in threads:
            thread.join(timeout_s)
        _LOG.info("DICOM SCP %s stopped", self._ae_title)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        listener = self._listener
        while not self._stop.is_set():
            self._expire_setups_and_idle()
            try:
                conn, address = listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if self._stop.is_set():
                    return
                _LOG.error("accept failed: %s", exc.strerror or type(exc).__name__)
                continue
            self._admit(conn, (str(address[0]), int(address[1])))

    def _expire_setups_and_idle(self) -> None:
        """End associations whose set-up outlasted ``acse_timeout_s`` or that sent no DIMSE message
        within ``idle_timeout_s``; checked every accept poll (:data:`_ACCEPT_POLL_S`: the precision)."""
        now = time.monotonic()
        with self._lock:
            associations = list(self._associations)
        for association in associations:
            if association.expire_setup(now):
                _LOG.warning("an association's set-up outlasted the ACSE timeout: closed (audited)")
            elif association.expire_idle(now):
                _LOG.info("an association sent no DIMSE message within the idle timeout: aborted (audited)")

    def _admit(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        if not self._config.access.peer_allowed(peer[0]):
            metrics.ASSOCIATIONS.labels(outcome="peer_not_allowed").inc()
            audit.emit("association_rejected", peer_ip=peer[0], reason="peer_not_allowed")
            conn.close()
            return
        with self._lock:
            limit = "peer_limit" if self._active_by_peer[peer[0]] >= self.maximum_associations_per_peer else ""
            if not limit and self._active >= self.maximum_associations:
                limit = "busy"
            if not limit:
                self._active += 1
                self._active_by_peer[peer[0]] += 1
            elif self._rejecting < _MAX_REJECTORS:
                self._rejecting += 1
            else:
                metrics.ASSOCIATIONS.labels(outcome=f"{limit}_dropped").inc()
                conn.close()
                return
            self._connections.add(conn)
        if not limit:
            metrics.ACTIVE_ASSOCIATIONS.inc()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        thread = threading.Thread(target=self._serve, args=(conn, peer, limit), name="dicom-association", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _busy_reason(self, limit: str) -> str:
        return limit or ("" if self._store.accepting() else "disk_low")

    def _serve(self, conn: socket.socket, peer: tuple[str, int], limit: str) -> None:
        """Serve one connection; ``limit``: the limit that refuses it (``busy``, ``peer_limit``), or ``""``."""
        serving = not limit

        def closed() -> None:  # called once, by Association.end on this thread
            with self._lock:
                if serving:
                    self._active -= 1
                    self._active_by_peer[peer[0]] -= 1
                    if self._active_by_peer[peer[0]] <= 0:
                        del self._active_by_peer[peer[0]]
                else:
                    self._rejecting -= 1
                self._connections.discard(conn)
            if serving:
                metrics.ACTIVE_ASSOCIATIONS.dec()

        association: Association | None = None
        try:
            association = Association(
                conn, peer, self._config, self._store, partial(self._busy_reason, limit), on_closed=closed
            )
            with self._lock:
                self._associations.add(association)
            association.run()  # returns once the association ended
        finally:
            with self._lock:
                self._associations.discard(association)
                self._threads.discard(threading.current_thread())

"""The seam between the association (protocol) and what a C-STORE does.

The association (:mod:`.association`, :mod:`.data_phase`) calls one :class:`StoreHandler` per C-STORE
(as pynetdicom's ``handle_store(event) -> status``): :meth:`StoreHandler.accepting` and
:meth:`StoreHandler.open_spool` when the command arrives, :meth:`StoreHandler.handle_store` with a
:class:`StoreRequest` once the data set is complete; the :class:`StoreResult` carries the DIMSE status
to answer. The implementation is :class:`~.storage.InstanceStore`.

Contract about "acknowledged" (the handler guarantees, the association honours): a result with
status success (0x0000) is returned only once the instance is durable (journal entry synced, or
file and index row committed) as the handler's policy defines it, so the association may answer it
at once; a refusal (``outcome`` None) stored nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from oncohabitat.listener import metrics
from oncohabitat.listener.index import AddOutcome
from oncohabitat.listener.spool import DatasetSpool

_LOG = logging.getLogger(__name__)

__all__ = ["StoreHandler", "StoreRequest", "StoreResult", "refuse"]


@dataclass(frozen=True)
class StoreResult:
    """Outcome of storing one instance.

    ``status`` is the DIMSE status to answer (see :mod:`status`); ``outcome`` is None when the
    instance was refused, ``reason`` then holds the stable rejection code.
    """

    status: int
    outcome: AddOutcome | None = None
    study_key: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class StoreRequest:
    """A completely received C-STORE: the request's Affected SOP Class/Instance UIDs (validated),
    the presentation context's transfer syntax and the data set's spool."""

    spool: DatasetSpool
    sop_class_uid: str
    sop_uid: str
    transfer_syntax: str


class StoreHandler(Protocol):
    """What a C-STORE does (see the module doc for the contract); an
    :class:`~.storage.InstanceStore` or a test proxy."""

    def accepting(self) -> bool:
        """False while no instance can be stored (free disk space below the watermark)."""
        ...  # pragma: no cover

    def open_spool(self, sop_class_uid: str, sop_uid: str, transfer_syntax: str) -> DatasetSpool:
        """A spool for the data set of a C-STORE whose command UIDs were validated."""
        ...  # pragma: no cover

    def handle_store(self, request: StoreRequest) -> StoreResult:
        """Check and store a completely received C-STORE (never raises for bad input or I/O); a
        success is durable when returned."""
        ...  # pragma: no cover

    def refuse(self, reason: str, dimse_status: int) -> StoreResult:
        """Count and log a C-STORE refused before or outside :meth:`handle_store`; the result to answer."""
        ...  # pragma: no cover


def refuse(reason: str, dimse_status: int) -> StoreResult:
    """Count and log a refused instance; the result to answer."""
    metrics.INSTANCES_REJECTED.labels(reason=reason).inc()
    _LOG.warning("C-STORE refused: %s (status 0x%04X)", reason, dimse_status)
    return StoreResult(dimse_status, None, None, reason)

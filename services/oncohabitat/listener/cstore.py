"""The seam between the association (protocol) and what a C-STORE does.

The association (:mod:`.association`, :mod:`.reactor`) speaks the DICOM upper layer and DIMSE;
per C-STORE it calls one :class:`StoreHandler` (as pynetdicom's ``handle_store(event) -> status``):
it asks :meth:`StoreHandler.accepting` and :meth:`StoreHandler.open_spool` when the command
arrives, streams the data set into the spool, and once it is complete calls
:meth:`StoreHandler.handle_store` with a :class:`StoreRequest`. The :class:`StoreResult` it gets
carries the DIMSE status to answer. The intake implementation behind it is
:class:`~.storage.InstanceStore` (:mod:`.intake`, :mod:`.duplicates`, :mod:`.recovery`).

Contract about "acknowledged" (the handler guarantees, the association honours):

* a result with status success (0x0000) and no ``settle`` means the instance is durable (journal
  entry synced, or file and index row committed) as the handler's policy defines it: the
  association may answer it at once;
* a result with ``settle`` is not durable yet: the association calls ``settle()`` before replying
  and answers what that returns (it may be a refusal: then nothing was acknowledged);
* a result with ``follow_up`` must have it called exactly once after the reply was sent (or its
  sending failed): the handler's after-reply work (duplicate checks, indexing) runs there, and
  until it ran the acknowledged instance holds back its study's completion;
* a refusal (``outcome`` None) stored nothing that will ever count as acknowledged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
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
    instance was refused, ``reason`` then holds the stable rejection code. ``settle``, set only
    when the caller asked to defer the sync (``store_spool(defer_sync=True)``), must be called
    before replying: it waits until the instance is durable and returns the result to answer.
    ``follow_up``, when set, must be called once the reply is sent: it finishes the work that need
    not delay the reply and returns the final result (e.g. ``IDENTICAL`` for a re-sent instance).
    ``follow_up_waits``: asked right before the follow-up runs, True when it would wait for the
    materialiser (an earlier version of the same UID is not indexed yet: up to the whole held-back
    backlog); a caller serving several associations on one thread then runs it elsewhere.
    """

    status: int
    outcome: AddOutcome | None = None
    study_key: str | None = None
    reason: str = ""
    follow_up: Callable[[], StoreResult] | None = field(default=None, compare=False, repr=False)
    settle: Callable[[], StoreResult] | None = field(default=None, compare=False, repr=False)
    follow_up_waits: Callable[[], bool] | None = field(default=None, compare=False, repr=False)


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

    def handle_store(self, request: StoreRequest, *, defer_sync: bool = False) -> StoreResult:
        """Check and store a completely received C-STORE (never raises for bad input or I/O).

        ``defer_sync``: the result may come back written but not durable, with ``settle``.
        """
        ...  # pragma: no cover

    def refuse(self, reason: str, dimse_status: int) -> StoreResult:
        """Count and log a C-STORE refused before or outside :meth:`handle_store`; the result to answer."""
        ...  # pragma: no cover


def refuse(reason: str, dimse_status: int) -> StoreResult:
    """Count and log a refused instance; the result to answer."""
    metrics.INSTANCES_REJECTED.labels(reason=reason).inc()
    _LOG.warning("C-STORE refused: %s (status 0x%04X)", reason, dimse_status)
    return StoreResult(dimse_status, None, None, reason)

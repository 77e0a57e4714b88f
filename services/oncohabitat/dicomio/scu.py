"""C-STORE SCU: send instances (files or pydicom datasets) to a PACS, with retries.

Used by the orchestrator's export stage (results back to PACS) and the demos (studies to the listener).

One association per batch of at most 128 presentation contexts. For each SOP class and transfer
syntax a context with exactly that syntax is proposed (objects go out unchanged when it is
accepted); for uncompressed little-endian objects a second context offers the other little-endian
syntax, and pynetdicom re-encodes the data set when only that one is accepted.
Association failures, aborted associations, missing responses and failure statuses are retried
(only the instances still pending) after ``backoff_s * 2 ** (attempt - 1)`` s, capped at
``max_backoff_s``. Success and warning statuses count as stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext
from pynetdicom.status import code_to_category

from oncohabitat.dicomio.identifiers import is_valid_uid, uid_key

_LOG = logging.getLogger(__name__)

#: Maximum presentation contexts one association may propose (PS3.8).
MAX_CONTEXTS = 128
_UNCOMPRESSED_LE = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


@dataclass
class SendReport:
    """What an export achieved.

    ``sent_keys``/``failed_keys`` are opaque keys (:func:`identifiers.uid_key`) of the SOP
    Instance UIDs; ``attempts`` counts association attempts (all batches); ``last_status`` is
    the last failure status received, if any.
    """

    sent_keys: list[str] = field(default_factory=list)
    failed_keys: list[str] = field(default_factory=list)
    warnings: int = 0
    attempts: int = 0
    last_status: int | None = None

    @property
    def sent(self) -> int:
        """Number of instances the peer acknowledged (success or warning)."""
        return len(self.sent_keys)


class SendError(Exception):
    """The export failed: an item cannot be read, or instances remain unacknowledged after all retries.

    ``report`` says what did get through. Messages are curated (no patient data).
    """

    def __init__(self, message: str, report: SendReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class _Item:
    source: Path | Dataset
    sop_class_uid: str
    sop_uid: str
    transfer_syntax: str

    @property
    def context_keys(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Contexts to propose: the object's own transfer syntax alone, so that a peer accepting
        it receives the object unchanged, plus (uncompressed only) a fallback context with the
        other little-endian syntax, into which the data set is re-encoded if needed."""
        own = (self.sop_class_uid, (self.transfer_syntax,))
        if self.transfer_syntax not in _UNCOMPRESSED_LE:
            return (own,)
        others = tuple(ts for ts in _UNCOMPRESSED_LE if ts != self.transfer_syntax)
        return own, (self.sop_class_uid, others)

    def load(self) -> Dataset:
        return self.source if isinstance(self.source, Dataset) else dcmread(self.source)


def _prepare(source: Path | Dataset) -> _Item:
    """Read the SOP class/instance and transfer syntax of one item (files: header only)."""
    try:
        if isinstance(source, Dataset):
            ds = source
        else:
            ds = dcmread(source, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
        meta = getattr(ds, "file_meta", None)
        transfer_syntax = None if meta is None else meta.get("TransferSyntaxUID")
        sop_class = ds.get("SOPClassUID")
        sop_uid = ds.get("SOPInstanceUID")
    except (InvalidDicomError, OSError, ValueError, TypeError, KeyError, EOFError) as exc:
        raise SendError("an instance to export could not be read", SendReport()) from exc
    if not (is_valid_uid(sop_class) and is_valid_uid(sop_uid) and is_valid_uid(transfer_syntax)):
        raise SendError(
            "an instance to export lacks a valid SOP Class/Instance UID or file meta Transfer Syntax UID",
            SendReport(),
        )
    return _Item(source, str(sop_class), str(sop_uid), str(transfer_syntax))


def _batches(items: Sequence[_Item]) -> list[list[_Item]]:
    """Split items into batches needing at most MAX_CONTEXTS presentation contexts each."""
    batches: list[list[_Item]] = []
    keys: set[tuple[str, tuple[str, ...]]] = set()
    for item in sorted(items, key=lambda it: it.context_keys):
        needed = set(item.context_keys) - keys
        if not batches or len(keys) + len(needed) > MAX_CONTEXTS:
            batches.append([])
            keys = set()
        keys.update(item.context_keys)
        batches[-1].append(item)
    return batches


def _contexts(batch: Sequence[_Item]) -> list[PresentationContext]:
    contexts: list[PresentationContext] = []
    for sop_class, syntaxes in sorted({key for item in batch for key in item.context_keys}):
        context = PresentationContext()
        context.abstract_syntax = UID(sop_class)
        context.transfer_syntax = [UID(ts) for ts in syntaxes]
        contexts.append(context)
    return contexts


def _send_batch(assoc: Association, batch: Sequence[_Item], report: SendReport) -> list[_Item]:
    """Send each item over an established association; returns those still pending."""
    pending: list[_Item] = []
    for item in batch:
        if not assoc.is_established:
            pending.append(item)
            continue
        try:
            response = assoc.send_c_store(item.load())
        except (ValueError, AttributeError, OSError, InvalidDicomError) as exc:
            _LOG.warning("instance %s not sent: %s", uid_key(item.sop_uid), type(exc).__name__)
            pending.append(item)
            continue
        code = int(response.Status) if "Status" in response else None
        category = code_to_category(code) if code is not None else "No response"
        if category in ("Success", "Warning"):
            report.sent_keys.append(uid_key(item.sop_uid))
            report.warnings += category == "Warning"
        else:
            report.last_status = code
            pending.append(item)
    return pending


def send_instances(
    items: Sequence[Path | Dataset],
    ae_title: str,
    host: str,
    port: int,
    *,
    calling_ae: str = "ONCOHABITAT",
    retries: int = 3,
    backoff_s: float = 1.0,
    max_backoff_s: float = 30.0,
    timeout_s: float = 30.0,
) -> SendReport:
    """C-STORE ``items`` (Part-10 file paths or datasets with file meta) to ``ae_title@host:port``.

    Args:
        items: files (sent as stored) or datasets (need ``file_meta.TransferSyntaxUID``).
        ae_title: the peer's (called) AE title.
        host: peer host name or address.
        port: peer TCP port.
        calling_ae: our AE title.
        retries: extra attempts after the first (>= 0).
        backoff_s: delay before the first retry, in s; doubled each retry.
        max_backoff_s: cap of the retry delay, in s.
        timeout_s: ACSE, DIMSE and network timeouts, in s.

    Returns:
        the report; every instance was acknowledged (success or warning).

    Raises:
        SendError: an item cannot be read, or instances remain unacknowledged after all
            retries (``error.report`` says which were sent).
    """
    if retries < 0:
        raise ValueError("retries must be >= 0")
    prepared = [_prepare(item) for item in items]
    report = SendReport()
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = timeout_s
    ae.dimse_timeout = timeout_s
    ae.network_timeout = timeout_s
    pending = _batches(prepared)
    for attempt in range(retries + 1):
        if not pending:
            break
        if attempt:
            time.sleep(min(max_backoff_s, backoff_s * 2.0 ** (attempt - 1)))
        still: list[list[_Item]] = []
        for batch in pending:
            report.attempts += 1
            assoc = ae.associate(host, port, contexts=_contexts(batch), ae_title=ae_title)
            if not assoc.is_established:
                _LOG.warning("association with %s:%d failed (attempt %d)", host, port, attempt + 1)
                still.append(batch)
                continue
            try:
                left = _send_batch(assoc, batch, report)
            finally:
                if assoc.is_established:
                    assoc.release()
            if left:
                still.append(left)
        pending = still
    failed = [item for batch in pending for item in batch]
    if failed:
        report.failed_keys = [uid_key(item.sop_uid) for item in failed]
        raise SendError(
            f"{len(failed)} of {len(prepared)} instance(s) not stored by {ae_title} after {retries + 1} attempt(s)",
            report,
        )
    _LOG.info("sent %d instance(s) to %s:%d", report.sent, host, port)
    return report

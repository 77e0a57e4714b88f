"""Journal metadata of an instance: what the listener knew when it journaled it, as compact JSON.

The store journals a received data set *before* its checks run, so that the journal's device
write proceeds while they do (see :mod:`.intake`). The metadata therefore carries only what the
C-STORE request and its presentation context say, the arrival time and the budgets its checks
are about to apply::

    [2, sop_class_uid, sop_uid, transfer_syntax, received_at, max_inflated_bytes, max_pixel_bytes]

(``received_at`` in epoch s, budgets in bytes). Everything else the index keeps (study, series,
modality, description...) is read from the payload by the same checks that ran at intake
(:func:`~.checks.inspect_body`): recovery re-runs them with the journaled budgets, so it repeats
the intake decision exactly, whatever the budgets are configured to at the restart. An entry they
refuse was refused at intake too (its peer got a failure status). The materialiser worker gets
each record from the listener over its pipe.

An instance its checks refuse gets a second, payload-less entry, a *refusal record*::

    [3, refused_sequence, reason]

(``reason`` is the refusal's reason code). Recovery then knows that entry ``refused_sequence``
was never acknowledged. The record is written without waiting for a sync (a refusal is answered
at once); where a crash lost it, recovery cannot tell an entry refused at intake from one its
checks would refuse only now (after an upgrade that tightened them) and keeps the data set aside
in quarantine instead of dropping it (see :mod:`.recovery`).

Entries of the first layout, ``[study_uid, *InstanceRecord fields]`` (journaled after the checks,
by earlier releases), are still decoded: a journal left by an unclean stop survives an upgrade.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from oncohabitat.listener.checks import Budgets
from oncohabitat.listener.index import InstanceRecord

_LAYOUT = 2
_REFUSAL_LAYOUT = 3
_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(InstanceRecord))
_ENCODER = json.JSONEncoder(separators=(",", ":"))


@dataclass(frozen=True)
class IntakeMeta:
    """A journaled C-STORE's identity (from its request and context), arrival time (epoch s) and
    the budgets its checks applied."""

    sop_class_uid: str
    sop_uid: str
    transfer_syntax: str
    received_at: float
    budgets: Budgets


@dataclass(frozen=True)
class RefusalMeta:
    """A refusal record: entry ``refused_sequence`` holds an instance refused by its checks (``reason``)."""

    refused_sequence: int
    reason: str


#: An entry of the first layout: its index record and Study Instance UID.
RecordMeta = tuple[InstanceRecord, str]


def encode_intake_meta(meta: IntakeMeta) -> bytes:
    """``[2, sop_class_uid, sop_uid, transfer_syntax, received_at, max_inflated_bytes, max_pixel_bytes]``
    as UTF-8 JSON."""
    budgets = meta.budgets
    values = [_LAYOUT, meta.sop_class_uid, meta.sop_uid, meta.transfer_syntax, meta.received_at]
    return _ENCODER.encode([*values, budgets.max_inflated_bytes, budgets.max_pixel_bytes]).encode()


def encode_refusal_meta(meta: RefusalMeta) -> bytes:
    """``[3, refused_sequence, reason]`` as UTF-8 JSON."""
    return _ENCODER.encode([_REFUSAL_LAYOUT, meta.refused_sequence, meta.reason]).encode()


def decode_journal_meta(data: bytes) -> IntakeMeta | RefusalMeta | RecordMeta:
    """The metadata of a journal entry, of any layout (see module doc).

    Raises:
        ValueError: metadata of neither layout.
    """
    values = json.loads(data)
    if not isinstance(values, list) or not values:
        raise ValueError("journal metadata has an unexpected layout")
    if values[0] == _LAYOUT and len(values) == 7:
        sop_class_uid, sop_uid, transfer_syntax, received_at, max_inflated, max_pixel = values[1:]
        if not all(isinstance(v, str) for v in (sop_class_uid, sop_uid, transfer_syntax)):
            raise ValueError("journal metadata has an unexpected layout")
        if not isinstance(received_at, int | float) or not all(isinstance(v, int) for v in (max_inflated, max_pixel)):
            raise ValueError("journal metadata has an unexpected layout")
        budgets = Budgets(max_inflated_bytes=max_inflated, max_pixel_bytes=max_pixel)
        return IntakeMeta(sop_class_uid, sop_uid, transfer_syntax, float(received_at), budgets)
    if values[0] == _REFUSAL_LAYOUT and len(values) == 3:
        refused_sequence, reason = values[1:]
        if not isinstance(refused_sequence, int) or isinstance(refused_sequence, bool) or not isinstance(reason, str):
            raise ValueError("journal metadata has an unexpected layout")
        return RefusalMeta(refused_sequence, reason)
    if isinstance(values[0], str) and len(values) == len(_RECORD_FIELDS) + 1:
        return InstanceRecord(**dict(zip(_RECORD_FIELDS, values[1:], strict=True))), values[0]
    raise ValueError("journal metadata has an unexpected layout")

"""Journal metadata of an instance: its checked index record and Study Instance UID, as compact JSON.

The store checks a received data set *before* it journals it (see :mod:`.intake`), so the entry's
metadata is the outcome of those checks: ``[study_uid, *InstanceRecord fields]`` (the record's
``sha256`` is empty: the journal keeps a CRC of the payload, and whoever reads the entry back
computes the SHA-256). Recovery stores such an entry as it is, without deciding anything again.

Metadata of any other layout (a release that journaled before its checks) is refused
(:class:`ValueError`): recovery then does not start, so that an entry that may be acknowledged is
never skipped unread. Stop the listener cleanly before an upgrade (a clean stop checkpoints every
entry).
"""

from __future__ import annotations

import dataclasses
import json

from oncohabitat.listener.index import InstanceRecord

_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(InstanceRecord))
_ENCODER = json.JSONEncoder(separators=(",", ":"))

#: A journaled instance: its index record and Study Instance UID.
RecordMeta = tuple[InstanceRecord, str]


def encode_record_meta(record: InstanceRecord, study_uid: str) -> bytes:
    """``[study_uid, *record fields]`` as UTF-8 JSON."""
    return _ENCODER.encode([study_uid, *dataclasses.astuple(record)]).encode()


def decode_journal_meta(data: bytes) -> RecordMeta:
    """The record and Study Instance UID of a journal entry (see module doc).

    Raises:
        ValueError: metadata of another layout.
    """
    values = json.loads(data)
    if not isinstance(values, list) or len(values) != len(_RECORD_FIELDS) + 1 or not isinstance(values[0], str):
        raise ValueError("journal metadata has an unexpected layout")
    return InstanceRecord(**dict(zip(_RECORD_FIELDS, values[1:], strict=True))), values[0]

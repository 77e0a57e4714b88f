"""Journal metadata of an instance: its index record and Study Instance UID, as compact JSON.

Written by the store when it journals an instance, read by the materialiser worker and by
recovery. A JSON array in :class:`~.index.InstanceRecord` field order (no field names: this
runs once per received instance).
"""

from __future__ import annotations

import dataclasses
import json

from oncohabitat.listener.index import InstanceRecord

_FIELDS = tuple(f.name for f in dataclasses.fields(InstanceRecord))
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def encode_journal_meta(record: InstanceRecord, study_uid: str) -> bytes:
    """``[study_uid, *record fields]`` as UTF-8 JSON."""
    return _ENCODER.encode([study_uid, *(getattr(record, name) for name in _FIELDS)]).encode()


def decode_journal_meta(meta: bytes) -> tuple[InstanceRecord, str]:
    """Inverse of :func:`encode_journal_meta`.

    Raises:
        ValueError: not metadata of this layout.
    """
    values = json.loads(meta)
    if not isinstance(values, list) or len(values) != len(_FIELDS) + 1:
        raise ValueError("journal metadata has an unexpected layout")
    return InstanceRecord(**dict(zip(_FIELDS, values[1:], strict=True))), str(values[0])

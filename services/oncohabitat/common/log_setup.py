"""Process-wide logging configuration: JSON lines that never carry patient identifiers.

Only a service's ``__main__`` (or the CLI) calls :func:`configure_logging`; library code uses
``logging.getLogger(__name__)`` and never adds handlers.

Protection against PHI is two-layered: code never logs identifiers (it logs opaque study keys and job ids),
and :class:`PhiRedactingFilter` additionally blanks any ``extra`` field whose name is a known patient
attribute and masks DICOM-style person names in messages.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

#: ``extra={...}`` keys that may never be emitted (compared case-insensitively, punctuation removed).
PHI_FIELD_NAMES = frozenset(
    {
        "patientname",
        "patientid",
        "patientbirthdate",
        "patientsbirthdate",
        "birthdate",
        "accessionnumber",
        "otherpatientids",
        "patientaddress",
        "referringphysicianname",
    }
)
REDACTED = "[redacted]"
# DICOM PN values look like FAMILY^GIVEN[^MIDDLE...]: mask any caret-joined word pair.
_PERSON_NAME = re.compile(r"\b[\w'-]+\^[\w'^ -]*")
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z]", "", name.lower())


class PhiRedactingFilter(logging.Filter):
    """Blank known patient-identifier fields and DICOM person names on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key in list(record.__dict__):
            if key not in _STANDARD_ATTRS and _normalise(key) in PHI_FIELD_NAMES:
                setattr(record, key, REDACTED)
        message = record.getMessage()
        if "^" in message:
            record.msg = _PERSON_NAME.sub(REDACTED, message)
            record.args = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, RFC 3339), level, logger, service, message, extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "service": self._service,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = value if isinstance(value, str | int | float | bool | None) else repr(value)
        if record.exc_info and record.exc_info[0] is not None:
            payload["exception"] = record.exc_info[0].__name__
        return json.dumps(payload, ensure_ascii=False)


def configure_logging(service: str, level: str = "INFO", json_lines: bool = True) -> None:
    """Install one stderr handler on the root logger (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(PhiRedactingFilter())
    if json_lines:
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # pyradiomics and pynetdicom are chatty at INFO; keep their warnings.
    for noisy in ("radiomics", "pynetdicom"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))

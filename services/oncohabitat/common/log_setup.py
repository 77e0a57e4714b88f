"""Process-wide logging configuration: JSON lines that never carry patient identifiers.

Only a service's ``__main__`` (or the CLI) calls :func:`configure_logging`; library code uses
``logging.getLogger(__name__)`` and never adds handlers.

Protection against PHI is two-layered: code never logs identifiers (it logs opaque study keys and job ids),
and :class:`PhiRedactingFilter` additionally blanks any ``extra`` field whose name is a known patient
attribute and masks DICOM-style person names in messages. Third-party DICOM libraries do quote element
values in their messages (pydicom: ``Invalid value for VR UI: '1.2...'``), so in records of their
loggers, and of Python warnings (captured into logging, pydicom warns the same way), every quoted
value is masked too. Tracebacks never carry exception messages: the JSON formatter keeps the
exception's class, the text formatter its stack and class.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import traceback
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
#: Loggers of libraries that quote DICOM values in their messages (and captured ``warnings``).
VALUE_QUOTING_LOGGERS = ("pydicom", "pynetdicom", "highdicom", "py.warnings")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_VALUE_QUOTING_ROOTS = frozenset(name for name in VALUE_QUOTING_LOGGERS if "." not in name)
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
        redacted = message
        if record.name.split(".")[0] in _VALUE_QUOTING_ROOTS or record.name == "py.warnings":
            redacted = _QUOTED.sub(f"'{REDACTED}'", redacted)
        if "^" in redacted:
            redacted = _PERSON_NAME.sub(REDACTED, redacted)
        if redacted != message:
            record.msg = redacted
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


class StackOnlyFormatter(logging.Formatter):
    """Text lines; an exception is shown as its stacks and classes, never its messages (they may quote values).

    A chain (``raise ... from`` or an exception while handling another) is shown cause first, as Python does.
    """

    def formatException(self, ei: Any) -> str:
        exc_type, exc, tb = ei
        if exc is None:
            stack = "".join(traceback.format_tb(tb)) if tb is not None else ""
            return f"Traceback (most recent call last):\n{stack}{exc_type.__name__ if exc_type else 'Exception'}"
        chain: list[BaseException] = []
        current: BaseException | None = exc
        while current is not None and all(current is not seen for seen in chain):
            chain.append(current)
            current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
        parts = [
            "Traceback (most recent call last):\n"
            + "".join(traceback.format_tb(item.__traceback__))
            + type(item).__name__
            for item in reversed(chain)
        ]
        return "\n\nwhich led to:\n\n".join(parts)


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
        handler.setFormatter(StackOnlyFormatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    logging.captureWarnings(True)  # library warnings go through the filter, not straight to stderr
    root.setLevel(level.upper())
    # pyradiomics and pynetdicom are chatty at INFO; keep their warnings.
    for noisy in ("radiomics", "pynetdicom"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))

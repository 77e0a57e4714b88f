"""The deployment's export destinations: the only DICOM nodes results (patient data) are ever sent to.

Configured by the orchestrator's settings: ``EXPORT_DESTINATION`` (the default, ``AE@HOST:PORT``) and
``EXPORT_DESTINATIONS`` (more, ``NAME=AE@HOST:PORT`` separated by commas). A request may *name* one of them (its
NAME, its AE title, or its configured ``AE@HOST:PORT`` text), never a new address: anything else is refused with
INVALID_ARGUMENT before a job exists, and the export stage checks again at send time (a job stored before the
list changed sends nothing to a node no longer listed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from oncohabitat.common.errors import InvalidInputError

_ADDRESS = re.compile(r"^[ -~]{1,16}@[A-Za-z0-9.\-:\[\]]+:\d{1,5}$")
_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,32}$")
#: Longest ``export_destination`` a request may carry, characters.
MAX_DESTINATION_CHARS = 64
DEFAULT_NAME = "default"


class DestinationNotAllowedError(InvalidInputError):
    """A request named an export destination that is not configured."""

    def __init__(self) -> None:
        super().__init__(
            "EXPORT_DESTINATION_NOT_ALLOWED",
            "export_destination must name one of the deployment's configured destinations",
            "export_destination",
        )


@dataclass(frozen=True)
class ExportDestinations:
    """Configured destinations by name (``AE@HOST:PORT`` each); ``default`` is the default one, if any."""

    by_name: dict[str, str]

    @classmethod
    def from_settings(cls, default: str, listed: str = "") -> ExportDestinations:
        """Parse the settings. Raises ValueError for a malformed entry (the service refuses to start)."""
        by_name: dict[str, str] = {}
        if default:
            if not _ADDRESS.match(default):
                raise ValueError("EXPORT_DESTINATION must be AE@HOST:PORT")
            by_name[DEFAULT_NAME] = default
        for item in filter(None, (part.strip() for part in listed.split(","))):
            name, sep, address = item.partition("=")
            if not sep or not _NAME.match(name.strip()) or not _ADDRESS.match(address.strip()):
                raise ValueError("EXPORT_DESTINATIONS entries must be NAME=AE@HOST:PORT")
            by_name[name.strip()] = address.strip()
        return cls(by_name)

    def resolve(self, requested: str) -> str:
        """The configured name a request's ``export_destination`` designates (``""``: the default).

        Raises:
            DestinationNotAllowedError: for anything not configured (a new address included).
        """
        if not requested:
            return ""
        if len(requested) > MAX_DESTINATION_CHARS:
            raise DestinationNotAllowedError()
        for name, address in self.by_name.items():
            if requested in (name, address, address.partition("@")[0]):
                return name
        raise DestinationNotAllowedError()

    def address(self, stored: str) -> str:
        """The ``AE@HOST:PORT`` to send a job's results to (``""``: none configured).

        ``stored`` is the job's resolved name (``""``: default); older jobs may hold a configured address.

        Raises:
            DestinationNotAllowedError: the job names a destination that is no longer configured.
        """
        if not stored:
            return self.by_name.get(DEFAULT_NAME, "")
        name = self.resolve(stored)
        return self.by_name[name]

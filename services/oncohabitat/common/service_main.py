"""Entry point shared by every service's ``__main__``: settings -> logging -> servicers -> serve."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import ValidationError

from oncohabitat.common.errors import DomainError
from oncohabitat.common.log_setup import configure_logging
from oncohabitat.common.server import Registration, ServiceRuntime
from oncohabitat.common.settings import ServiceSettings

logger = logging.getLogger(__name__)

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


@dataclass
class ServiceParts:
    """What a service contributes to its server: servicers, served names, start/stop hooks."""

    registrations: Sequence[Registration]
    service_names: Sequence[str]
    on_start: list[Callable[[ServiceRuntime], None]] = field(default_factory=list)
    on_stop: list[Callable[[], None]] = field(default_factory=list)


def make_runtime(name: str, settings: SettingsT, build: Callable[[SettingsT], ServiceParts]) -> ServiceRuntime:
    """Build (not start) the runtime of a service from its settings."""
    parts = build(settings)
    return ServiceRuntime(
        name=name,
        settings=settings,
        registrations=parts.registrations,
        service_names=parts.service_names,
        on_stop=list(parts.on_stop),
        after_start=list(parts.on_start),
    )


def run_service(name: str, settings_cls: type[SettingsT], build: Callable[[SettingsT], ServiceParts]) -> int:
    """Load settings (exit 2 with a clear message if invalid), configure logging, serve until SIGTERM."""
    try:
        settings = settings_cls()
    except ValidationError as exc:
        print(f"{name}: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(name, settings.log_level, settings.log_json)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        runtime = make_runtime(name, settings, build)
    except DomainError as exc:
        # e.g. a model bundle whose hashes do not verify: refuse to start, say why.
        logger.critical("%s cannot start: %s (%s)", name, exc.public_message, exc.reason)
        print(f"{name}: cannot start: {exc.public_message} ({exc.reason})", file=sys.stderr)
        return 3
    runtime.serve_forever()
    return 0

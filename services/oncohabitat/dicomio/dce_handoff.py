"""The listener's DCE classification as it travels with the hand-off, and its reconstruction by the orchestrator.

The study is classified once, by the listener at completion (:func:`oncohabitat.dicomio.dce.classify_dce`).
:func:`handoff_json` is that classification's JSON summary plus, per phase, its instance files relative to the
DICOM store root (digest-named: no UID, no patient data) in slice order. The orchestrator rebuilds the
:class:`DceClassification` from it and the instances' headers (:func:`classification_from_handoff`) and
assembles those phases without classifying again. A summary that does not match the submitted files (a phase
names a file that is not among them) raises :class:`HandoffMismatchError`; the caller then classifies itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from oncohabitat.dicomio.dce import DceClassification, DceReason, PhaseInfo, PhaseRole
from oncohabitat.dicomio.scan import InstanceInfo


class HandoffMismatchError(Exception):
    """The hand-off's classification does not fit the study's files (curated message, no paths)."""


def handoff_json(classification: DceClassification, root: Path) -> dict[str, Any]:
    """``classification.to_json()`` plus ``instance_paths`` (relative to ``root``, POSIX) per phase."""
    summary = classification.to_json()
    base = root.resolve()
    for entry, phase in zip(summary["phases"], classification.phases, strict=True):
        entry["instance_paths"] = [Path(path).resolve().relative_to(base).as_posix() for path in phase.paths]
    return summary


def classification_from_handoff(
    summary: Mapping[str, Any], infos: Sequence[InstanceInfo], root: Path
) -> DceClassification:
    """The eligible classification a hand-off carries, its phases made of ``infos`` (files under ``root``).

    Raises:
        HandoffMismatchError: not eligible, no phases, or a phase file missing from ``infos``.
    """
    if not summary.get("eligible") or not summary.get("phases"):
        raise HandoffMismatchError("the hand-off's classification is not an eligible DCE study")
    base = root.resolve()
    by_path = {Path(info.path).resolve(): info for info in infos}
    phases = []
    for entry in summary["phases"]:
        try:
            instances = tuple(by_path[(base / relative).resolve()] for relative in entry["instance_paths"])
        except KeyError:
            raise HandoffMismatchError("a phase of the hand-off names a file the study does not have") from None
        first = instances[0]
        phases.append(
            PhaseInfo(
                index=int(entry["index"]),
                role=PhaseRole(entry["role"]),
                series_uid=first.series_instance_uid,
                series_key=str(entry["series_key"]),
                time_from_pre_s=float(entry["time_from_pre_s"]),
                time_after_injection_s=float(entry["time_after_injection_s"]),
                time_source=str(entry["time_source"]),
                instances=instances,
            )
        )
    return DceClassification(
        eligible=True,
        reason_code=DceReason.ELIGIBLE,
        reason=str(summary.get("reason", "")),
        layout=str(summary.get("layout", "")),
        phases=tuple(phases),
        series=(),
        injection_time_source=str(summary.get("injection_time_source", "")),
    )

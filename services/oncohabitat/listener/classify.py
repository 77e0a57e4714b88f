"""Classification of a completed study for the index and the admin API (DCE series and phase roles).

Runs :func:`oncohabitat.dicomio.dce.classify_study_files` on the study's stored files (headers
only) and keeps its JSON summary: opaque series keys, roles, reasons and phase times, never UIDs or
patient data; each phase also lists its (store-relative) files, so that the orchestrator assembles
the phases without classifying again (:mod:`oncohabitat.dicomio.dce_handoff`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from oncohabitat.dicomio.dce import DceRules, classify_study_files
from oncohabitat.dicomio.dce_handoff import handoff_json
from oncohabitat.listener.index import StudyIndex

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyVerdict:
    """Eligibility of a study with its reason code, curated reason and classification JSON."""

    eligible: bool
    reason_code: str
    reason: str
    classification_json: str


class DceStudyClassifier:
    """Classifies a study of the index from its files in ``root`` with ``rules``."""

    def __init__(self, index: StudyIndex, root: Path, rules: DceRules | None = None) -> None:
        self._index = index
        self._root = root
        self._rules = rules or DceRules()

    def __call__(self, study_key: str) -> StudyVerdict:
        """The verdict; a study whose files cannot be classified gets ``CLASSIFICATION_FAILED``.

        Any exception counts (pydicom raises e.g. ``NotImplementedError`` for some values): a study
        must end with a reason, never stay RECEIVING because its classification keeps failing.
        """
        paths = [self._root / record.path for record in self._index.instances(study_key)]
        try:
            result = classify_study_files(paths, self._rules)
        except Exception as exc:  # noqa: BLE001 - any header pydicom cannot read ends as a reason, not a stall
            _LOG.error("study %s could not be classified: %s", study_key, type(exc).__name__)
            payload = {"eligible": False, "reason_code": "CLASSIFICATION_FAILED", "reason": "headers unreadable"}
            return StudyVerdict(False, "CLASSIFICATION_FAILED", "headers unreadable", json.dumps(payload))
        summary = handoff_json(result, self._root)  # with each phase's files: it travels with the hand-off
        return StudyVerdict(result.eligible, result.reason_code.value, result.reason, json.dumps(summary))

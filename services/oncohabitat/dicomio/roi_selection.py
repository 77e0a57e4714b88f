"""Which ROI (RTSTRUCT) or segment (SEG) is "the tumour"."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from oncohabitat.dicomio.errors import MaskSelectionError

#: Matches GTV / tumour / tumor / lesion as a word, where "_" and "-" also separate words
#: ("GTV_Mass_CT", "GTV-1", "Tumour 2", "lesion"), but not "GTVp" or "CTV".
DEFAULT_ROI_PATTERN = r"(?i)(?<![a-z0-9])(gtv|tumou?rs?|lesions?)(?![a-z])"


class SelectionReason(StrEnum):
    """``reason`` tokens of :class:`MaskSelectionError`."""

    NO_ROI = "NO_ROI"
    AMBIGUOUS_ROI = "AMBIGUOUS_ROI"


@dataclass(frozen=True)
class RoiSelection:
    """Selection rule.

    Attributes:
        name: when set, the ROI with exactly this name (case-sensitive) is taken and the pattern is ignored.
        pattern: regular expression searched in each ROI name; exactly one match is taken.  With no match,
            a structure set holding a single ROI yields that ROI.
    """

    name: str | None = None
    pattern: str = DEFAULT_ROI_PATTERN


def select_roi(roi_names: Sequence[str], selection: RoiSelection | None = None) -> int:
    """Index into ``roi_names`` of the selected ROI.

    Raises:
        MaskSelectionError: ``NO_ROI`` when nothing matches (and there is not exactly one ROI),
            ``AMBIGUOUS_ROI`` when several ROIs match; the error lists ``roi_names``.
    """
    rule = selection or RoiSelection()
    names = list(roi_names)
    if rule.name is not None:
        hits = [i for i, name in enumerate(names) if name == rule.name]
        what = f"named {rule.name!r}"
    else:
        regex = re.compile(rule.pattern)
        hits = [i for i, name in enumerate(names) if regex.search(name)]
        what = f"matching {rule.pattern!r}"
        if not hits and len(names) == 1:
            return 0
    if len(hits) == 1:
        return hits[0]
    listed = ", ".join(repr(n) for n in names) or "none"
    if not hits:
        raise MaskSelectionError(SelectionReason.NO_ROI, f"no ROI {what}; available: {listed}", names)
    raise MaskSelectionError(SelectionReason.AMBIGUOUS_ROI, f"{len(hits)} ROIs {what}; available: {listed}", names)

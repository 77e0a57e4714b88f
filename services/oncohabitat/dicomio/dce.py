"""DCE-MRI study understanding: which series is the dynamic acquisition, and its ordered phases.

Input is the header-only inventory of one study (:func:`~oncohabitat.dicomio.scan.scan_instances`);
output a :class:`DceClassification` that either lists the phases (pre-contrast first, then each
post-contrast phase with its time after injection in s) or says, with a stable ``reason_code``,
why the study is not an eligible dynamic breast study. Nothing is guessed: ambiguity is a reason.

Steps (all thresholds and name patterns are :class:`DceRules`, loadable from JSON):

1. Every series gets a role. Non-images (RTSTRUCT, SEG, SR), other modalities and multi-frame /
   Enhanced MR objects are set aside; localisers, vendor subtraction series, MIP/MPR reformats,
   diffusion (DWI/ADC) and T2-weighted series are recognised from ImageType, DiffusionBValue and
   vendor naming (GE "Ph1/VIBRANT/SUB", Siemens "fl3d/dyn/_SUB", Philips "THRIVE/dyn/Sub"); they are
   stored and listed but never used as phases.
2. A remaining MR series whose slice positions repeat k >= 2 times is a *multi-phase* series; it is
   split by TemporalPositionIdentifier, else TriggerTime (one value per phase), else by ranking the
   instances at each position by AcquisitionTime, then ContentTime. Series whose positions occur
   once are single phases; two or more with the same grid form a *per-phase* dynamic group when
   they carry dynamic evidence (dynamic naming, temporal tags, contrast tags, TriggerTime) or are
   at least ``min_phases`` acquisitions.
3. Exactly one dynamic candidate must remain (else ``NO_DYNAMIC_SERIES`` / ``AMBIGUOUS_DYNAMIC``).
   Phases are ordered by the first available time source of ``rules.time_sources``; times must be
   known and distinct. Phase 0 is pre-contrast unless its naming says post-contrast or it was
   acquired after ContrastBolusStartTime (``NO_PRE_CONTRAST``).
4. Time after injection: ContrastBolusStartTime when present (converted to the time source's
   reference), else the pre-contrast time plus ``default_injection_delay_s`` (recorded as assumed).
5. Eligibility also needs >= ``min_phases`` phases, >= ``min_slices`` slices per phase, a breast
   examination (BodyPartExamined BREAST or breast naming) when ``require_breast``, and consistent
   header geometry (:func:`oncohabitat.dicomio.phases.validate_phase_geometry`).

Times are seconds; positions are mm along the slice normal (LPS).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from oncohabitat.dicomio.errors import DicomIOError
from oncohabitat.dicomio.scan import InstanceInfo, InstanceKind, group_by_series, scan_instances

ENHANCED_MR_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.4.1"
_DAY_S = 86400.0


class SeriesRole(StrEnum):
    """Role of a series in a DCE study (``classification`` of the admin API's SeriesSummary)."""

    DYNAMIC_PHASE = "dynamic-phase"  # one series = one phase of the dynamic acquisition
    DYNAMIC_MULTIPHASE = "dynamic-multiphase"  # one series holding every phase
    SUBTRACTION = "subtraction"
    LOCALIZER = "localizer"
    DERIVED = "derived"
    DWI = "dwi"
    T2 = "t2"
    NON_DYNAMIC = "non-dynamic"
    MULTIFRAME = "multiframe"
    RTSTRUCT = "rtstruct"
    SEG = "seg"
    OTHER = "other"


class PhaseRole(StrEnum):
    """Role of a phase (matches ``oncohabitat.v1.PhaseRole`` names without prefix, lower case)."""

    PRE_CONTRAST = "pre-contrast"
    POST_CONTRAST = "post-contrast"


class DceReason(StrEnum):
    """Stable reason codes of :attr:`DceClassification.reason_code`."""

    ELIGIBLE = "ELIGIBLE"
    NO_MR_IMAGES = "NO_MR_IMAGES"
    NO_DYNAMIC_SERIES = "NO_DYNAMIC_SERIES"
    AMBIGUOUS_DYNAMIC = "AMBIGUOUS_DYNAMIC"
    TOO_FEW_PHASES = "TOO_FEW_PHASES"
    TOO_MANY_PHASES = "TOO_MANY_PHASES"
    TOO_FEW_SLICES = "TOO_FEW_SLICES"
    PHASE_TIMES_UNKNOWN = "PHASE_TIMES_UNKNOWN"
    PHASE_TIMES_NOT_DISTINCT = "PHASE_TIMES_NOT_DISTINCT"
    NO_PRE_CONTRAST = "NO_PRE_CONTRAST"
    NOT_BREAST = "NOT_BREAST"
    INCONSISTENT_GEOMETRY = "INCONSISTENT_GEOMETRY"


class DceRulesError(DicomIOError):
    """A rules file cannot be read or has unknown or invalid fields."""


@dataclass(frozen=True)
class DceRules:
    """Configurable classification rules (defaults suit GE, Siemens and Philips breast DCE).

    Patterns are case-insensitive regular expressions matched against SeriesDescription and
    ProtocolName. Times in s, distances in mm.
    """

    min_phases: int = 3
    max_phases: int = 64
    min_slices: int = 4
    require_breast: bool = True
    breast_pattern: str = r"breast|mamm|brust|\bsein\b|\bbrst\b|\bbilat"
    localizer_pattern: str = r"\bloc\b|locali[sz]er|scout|survey|3.?plane|tri.?pilot|\bcal(ibration)?\b"
    subtraction_pattern: str = r"\bsub\b|subtract|\bsub[_\-\d]|[_\-]sub\b|\bsubs\b"
    derived_pattern: str = r"\bmip\b|\bmpr\b|reformat|maximum intensity|\bcad\b|\bmoco\b"
    dwi_pattern: str = r"\bdwi\b|diff|\badc\b|trace|ep2d|\bb\s?\d{2,4}\b|\bresolve\b"
    t2_pattern: str = r"\bt2|stir|haste|\btirm\b|\bspair\b.*t2|\bssfse\b"
    dynamic_pattern: str = (
        r"dyn|\bdce\b|vibrant|thrive|fl3d|twist|tricks|\bph(ase)?\s?\d|multi.?phase|\bpre\b|\bpost\b"
        r"|\+c\b|\bgad|contrast|\bc\+"
    )
    pre_pattern: str = r"\bpre\b|pre[-_ ]?contrast|non[-_ ]?contrast|\bnative\b|\bnc\b|\bph(ase)?\s?0?1\b"
    post_pattern: str = r"\bpost\b|post[-_ ]?contrast|\+c\b|\bc\+|\bpost\s?\d"
    time_sources: tuple[str, ...] = ("AcquisitionTime", "TriggerTime", "ContentTime", "SeriesTime")
    default_injection_delay_s: float = 0.0
    min_phase_gap_s: float = 1.0
    position_tolerance_mm: float = 0.05
    allow_resample: bool = False

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> DceRules:
        """Rules from a mapping of field names (unknown names are an error).

        Raises:
            DceRulesError: unknown field, wrong type or an invalid pattern.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise DceRulesError("DCE_RULES_INVALID", f"unknown DCE rule field(s): {', '.join(unknown)}")
        converted = dict(values)
        if "time_sources" in converted:
            converted["time_sources"] = tuple(str(v) for v in converted["time_sources"])
        try:
            rules = cls(**converted)
        except TypeError as exc:
            raise DceRulesError("DCE_RULES_INVALID", "DCE rules have a field of the wrong type") from exc
        rules.validate()
        return rules

    @classmethod
    def from_json_file(cls, path: str | PathLike[str]) -> DceRules:
        """Rules from a JSON object file (fields as in this class; missing fields keep defaults)."""
        try:
            values = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DceRulesError("DCE_RULES_INVALID", "DCE rules file cannot be read as JSON") from exc
        if not isinstance(values, dict):
            raise DceRulesError("DCE_RULES_INVALID", "DCE rules file must hold a JSON object")
        return cls.from_mapping(values)

    def validate(self) -> None:
        """Check ranges and compile every pattern.

        Raises:
            DceRulesError: an invalid value or pattern.
        """
        if not 2 <= self.min_phases <= self.max_phases or self.min_slices < 1:
            raise DceRulesError("DCE_RULES_INVALID", "need 2 <= min_phases <= max_phases and min_slices >= 1")
        unknown = set(self.time_sources) - set(_TIME_SOURCES)
        if unknown or not self.time_sources:
            raise DceRulesError("DCE_RULES_INVALID", f"time_sources must be among {', '.join(_TIME_SOURCES)}")
        for name in ("breast", "localizer", "subtraction", "derived", "dwi", "t2", "dynamic", "pre", "post"):
            try:
                re.compile(getattr(self, f"{name}_pattern"))
            except re.error as exc:
                raise DceRulesError("DCE_RULES_INVALID", f"{name}_pattern is not a valid regular expression") from exc

    def matches(self, name: str, text: str) -> bool:
        """True when ``<name>_pattern`` occurs in ``text`` (case-insensitive)."""
        return re.search(getattr(self, f"{name}_pattern"), text, re.IGNORECASE) is not None


@dataclass(frozen=True)
class PhaseInfo:
    """One phase of the dynamic acquisition.

    Attributes:
        index: 0 for pre-contrast, 1..N for post-contrast phases in acquisition order.
        role: pre- or post-contrast.
        series_uid: the series the phase comes from (shared by all phases of a multi-phase series).
        series_key: opaque key of that series (hex SHA-256 of the UID, 32 characters).
        time_from_pre_s: acquisition time relative to the pre-contrast phase, s.
        time_after_injection_s: time after contrast injection, s (negative for pre-contrast).
        time_source: the attribute the times come from (e.g. ``"AcquisitionTime"``).
        instances: the phase's instances sorted by ascending position along the slice normal.
    """

    index: int
    role: PhaseRole
    series_uid: str
    series_key: str
    time_from_pre_s: float
    time_after_injection_s: float
    time_source: str
    instances: tuple[InstanceInfo, ...]

    @property
    def paths(self) -> tuple[Path, ...]:
        """Files of the phase, ordered like :attr:`instances`."""
        return tuple(info.path for info in self.instances)


@dataclass(frozen=True)
class SeriesClassification:
    """Role of one series and why (``reason`` is curated text without patient data)."""

    series_uid: str
    series_key: str
    modality: str
    sop_class_uid: str
    instance_count: int
    role: SeriesRole
    reason: str
    phase_indices: tuple[int, ...] = ()


@dataclass(frozen=True)
class DceClassification:
    """Outcome of :func:`classify_dce` (see module doc).

    ``phases`` is filled whenever a dynamic acquisition was ordered, also when a later check made
    the study ineligible (e.g. ``TOO_FEW_PHASES``): use the phases only when :attr:`eligible`.
    """

    eligible: bool
    reason_code: DceReason
    reason: str
    layout: str  # "per-phase", "multi-phase" or "" when no dynamic series was found
    phases: tuple[PhaseInfo, ...]
    series: tuple[SeriesClassification, ...]
    injection_time_source: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary: opaque series keys, roles, reasons and times; no UIDs, paths or PHI."""
        return {
            "eligible": self.eligible,
            "reason_code": self.reason_code.value,
            "reason": self.reason,
            "layout": self.layout,
            "injection_time_source": self.injection_time_source,
            "phases": [
                {
                    "index": p.index,
                    "role": p.role.value,
                    "series_key": p.series_key,
                    "time_from_pre_s": round(p.time_from_pre_s, 3),
                    "time_after_injection_s": round(p.time_after_injection_s, 3),
                    "time_source": p.time_source,
                    "slices": len(p.instances),
                }
                for p in self.phases
            ],
            "series": [
                {
                    "series_key": s.series_key,
                    "modality": s.modality,
                    "sop_class_uid": s.sop_class_uid,
                    "instance_count": s.instance_count,
                    "role": s.role.value,
                    "reason": s.reason,
                    "phase_indices": list(s.phase_indices),
                }
                for s in self.series
            ],
        }


def series_key(series_uid: str) -> str:
    """Opaque key of a series UID: hex SHA-256, first 32 characters (the listener's scheme)."""
    return hashlib.sha256(series_uid.encode("ascii", errors="replace")).hexdigest()[:32]


# ---- time sources ----------------------------------------------------------------------------


def _trigger_s(info: InstanceInfo) -> float | None:
    return None if info.trigger_time_ms is None else info.trigger_time_ms / 1000.0


_TIME_SOURCES: dict[str, Callable[[InstanceInfo], float | None]] = {
    "AcquisitionTime": lambda i: i.acquisition_time_s,
    "TriggerTime": _trigger_s,
    "ContentTime": lambda i: i.content_time_s,
    "SeriesTime": lambda i: i.series_time_s,
}
#: Time sources that are times of day (comparable with ContrastBolusStartTime).
_ABSOLUTE_SOURCES = frozenset({"AcquisitionTime", "ContentTime", "SeriesTime"})


# ---- step 1: series roles --------------------------------------------------------------------


@dataclass
class _Series:
    uid: str
    instances: list[InstanceInfo]
    role: SeriesRole | None = None
    reason: str = ""
    phase_indices: tuple[int, ...] = ()

    @property
    def first(self) -> InstanceInfo:
        return self.instances[0]

    @property
    def text(self) -> str:
        return f"{self.first.series_description} {self.first.protocol_name}"


def _image_type_has(series: _Series, *words: str) -> str:
    values = {v for info in series.instances for v in info.image_type}
    return next((w for w in words if w in values), "")


def _exclusion(series: _Series, rules: DceRules) -> tuple[SeriesRole, str] | None:
    """Role and reason when the series can never be a dynamic phase, else None."""
    first = series.first
    if first.kind is InstanceKind.RTSTRUCT:
        return SeriesRole.RTSTRUCT, "RT Structure Set (supplied contours)"
    if first.kind is InstanceKind.SEG:
        return SeriesRole.SEG, "DICOM Segmentation (supplied mask)"
    if first.kind is not InstanceKind.IMAGE:
        return SeriesRole.OTHER, f"not an image ({first.modality or 'no modality'})"
    if first.modality != "MR":
        return SeriesRole.OTHER, f"modality {first.modality or 'missing'}, not MR"
    if first.sop_class_uid == ENHANCED_MR_SOP_CLASS_UID or any(i.number_of_frames > 1 for i in series.instances):
        return (
            SeriesRole.MULTIFRAME,
            "multi-frame (Enhanced MR) object: only classic single-frame MR phases are assembled",
        )
    word = _image_type_has(series, "LOCALIZER")
    if word or rules.matches("localizer", series.text):
        return SeriesRole.LOCALIZER, "localizer (ImageType LOCALIZER)" if word else "localizer (series naming)"
    word = _image_type_has(series, "SUBTRACTION", "SUB")
    if word or rules.matches("subtraction", series.text):
        source = f"ImageType {word}" if word else "series naming"
        return SeriesRole.SUBTRACTION, f"vendor subtraction series ({source}); not a phase"
    word = _image_type_has(series, "MIP", "MPR", "REFORMATTED", "PROJECTION IMAGE")
    if word or rules.matches("derived", series.text):
        source = f"ImageType {word}" if word else "series naming"
        return SeriesRole.DERIVED, f"derived reformat/projection ({source})"
    word = _image_type_has(series, "DIFFUSION", "ADC", "TRACEW", "EADC", "FA")
    if word or any(i.diffusion_b_value is not None for i in series.instances) or rules.matches("dwi", series.text):
        return SeriesRole.DWI, "diffusion-weighted / ADC series"
    if rules.matches("t2", series.text):
        return SeriesRole.T2, "T2-weighted series (series naming)"
    return None


# ---- step 2: geometry and phase splitting ----------------------------------------------------


def _normal(info: InstanceInfo) -> np.ndarray | None:
    if info.image_orientation is None:
        return None
    row, col = np.asarray(info.image_orientation[:3]), np.asarray(info.image_orientation[3:])
    normal = np.cross(row, col)
    length = float(np.linalg.norm(normal))
    return None if length < 1e-6 else normal / length


def _positions(series: _Series, rules: DceRules) -> list[int] | None:
    """Quantised position along the slice normal of each instance (None without geometry)."""
    normal = _normal(series.first)
    if normal is None:
        return None
    keys = []
    for info in series.instances:  # mixed orientations are refused later, by validate_phase_geometry
        if info.image_position_mm is None:
            return None
        along = float(np.dot(np.asarray(info.image_position_mm), normal))
        keys.append(round(along / rules.position_tolerance_mm))
    return keys


def _sort_by_position(instances: Iterable[InstanceInfo]) -> tuple[InstanceInfo, ...]:
    items = list(instances)
    normal = _normal(items[0])
    if normal is None:
        return tuple(items)
    return tuple(sorted(items, key=lambda i: float(np.dot(np.asarray(i.image_position_mm), normal))))


def _split_multiphase(
    series: _Series, positions: list[int], phases: int
) -> tuple[list[list[InstanceInfo]], str] | None:
    """Split a multi-phase series into ``phases`` groups with one instance per position."""
    n_positions = len(set(positions))
    keyed: list[tuple[str, Callable[[InstanceInfo], float | None]]] = [
        ("TemporalPositionIdentifier", lambda i: None if i.temporal_position is None else float(i.temporal_position)),
        ("TriggerTime", _trigger_s),
    ]
    for name, getter in keyed:
        values = [getter(i) for i in series.instances]
        if any(v is None for v in values) or len(set(values)) != phases:
            continue
        groups: dict[float, list[tuple[int, InstanceInfo]]] = defaultdict(list)
        for value, position, info in zip(values, positions, series.instances, strict=True):
            groups[value].append((position, info))  # type: ignore[index]
        if all(len({p for p, _ in g}) == n_positions == len(g) for g in groups.values()):
            return [[info for _, info in groups[v]] for v in sorted(groups)], name
    for name in ("AcquisitionTime", "ContentTime"):
        getter = _TIME_SOURCES[name]
        by_position: dict[int, list[tuple[float, InstanceInfo]]] = defaultdict(list)
        for position, info in zip(positions, series.instances, strict=True):
            value = getter(info)
            if value is None:
                break
            by_position[position].append((value, info))
        else:
            ranked = [sorted(items, key=lambda item: item[0]) for items in by_position.values()]
            if all(len({t for t, _ in items}) == phases for items in ranked):
                return [[items[k][1] for items in ranked] for k in range(phases)], f"{name} rank per position"
    return None


def _grid_signature(series: _Series, positions: list[int]) -> tuple[Any, ...]:
    first = series.first
    orientation = tuple(round(v, 3) for v in first.image_orientation or ())
    spacing = tuple(round(v, 3) for v in first.pixel_spacing_mm or ())
    return orientation, first.rows, first.columns, spacing, len(positions), min(positions), max(positions)


def _has_dynamic_evidence(series: _Series, rules: DceRules) -> bool:
    first = series.first
    return (
        rules.matches("dynamic", series.text)
        or first.temporal_position is not None
        or (first.number_of_temporal_positions or 0) > 1
        or bool(first.contrast_agent)
        or first.contrast_start_time_s is not None
        or first.trigger_time_ms is not None
    )


# ---- step 3+4: phase ordering and times ------------------------------------------------------


@dataclass
class _Candidate:
    layout: str
    series: list[_Series]
    groups: list[list[InstanceInfo]]  # one list per phase (unordered yet)
    split: str = ""


@dataclass
class _Outcome:
    code: DceReason
    reason: str
    phases: tuple[PhaseInfo, ...] = ()
    injection_source: str = ""
    layout: str = ""
    dynamic_series: list[_Series] = field(default_factory=list)


def _phase_time(group: Sequence[InstanceInfo], source: str) -> float | None:
    values = [_TIME_SOURCES[source](i) for i in group]
    if any(v is None for v in values):
        return None
    return min(v for v in values if v is not None)


def _unwrap_midnight(times: list[float]) -> list[float]:
    """Times of day of an acquisition that crossed midnight, made monotonic by adding 24 h."""
    base = times[0]
    return [t + _DAY_S if t < base - _DAY_S / 2 else t for t in times]


def _order_phases(candidate: _Candidate, rules: DceRules) -> _Outcome:
    for source in rules.time_sources:
        if candidate.layout == "multi-phase" and source == "SeriesTime":
            continue
        times = [_phase_time(g, source) for g in candidate.groups]
        if any(t is None for t in times):
            continue
        known = [float(t) for t in times if t is not None]
        if source in _ABSOLUTE_SOURCES:
            known = _unwrap_midnight(known)
        order = sorted(range(len(known)), key=lambda k: known[k])
        ordered = [known[k] for k in order]
        gaps = np.diff(ordered)
        if len(gaps) and float(np.min(gaps)) < rules.min_phase_gap_s:
            return _Outcome(
                DceReason.PHASE_TIMES_NOT_DISTINCT,
                f"two phases are less than {rules.min_phase_gap_s:g} s apart by {source}",
            )
        return _finish_phases(candidate, [candidate.groups[k] for k in order], ordered, source, rules)
    return _Outcome(
        DceReason.PHASE_TIMES_UNKNOWN,
        f"phase times unknown: none of {', '.join(rules.time_sources)} is present for every phase",
    )


def _injection(groups: list[list[InstanceInfo]], times: list[float], source: str, rules: DceRules) -> tuple[float, str]:
    """Injection time in the time source's reference, and where it came from."""
    starts = [i.contrast_start_time_s for g in groups for i in g if i.contrast_start_time_s is not None]
    if starts:
        start = min(starts)
        if source in _ABSOLUTE_SOURCES:
            return _unwrap_midnight([times[0], start])[1], "ContrastBolusStartTime"
        pre_clock = _phase_time(groups[0], "AcquisitionTime")
        if pre_clock is not None:
            offset = _unwrap_midnight([pre_clock, start])[1] - pre_clock
            return times[0] + offset, "ContrastBolusStartTime"
    return times[0] + rules.default_injection_delay_s, (
        f"assumed: pre-contrast time + {rules.default_injection_delay_s:g} s (no ContrastBolusStartTime)"
    )


def _finish_phases(
    candidate: _Candidate, groups: list[list[InstanceInfo]], times: list[float], source: str, rules: DceRules
) -> _Outcome:
    first_text = " ".join(f"{i.series_description} {i.protocol_name}" for i in groups[0][:1])
    injection, injection_source = _injection(groups, times, source, rules)
    if (rules.matches("post", first_text) and not rules.matches("pre", first_text)) or (
        injection_source == "ContrastBolusStartTime" and times[0] > injection + rules.min_phase_gap_s
    ):
        return _Outcome(
            DceReason.NO_PRE_CONTRAST,
            "the earliest phase is post-contrast (naming or acquired after ContrastBolusStartTime)",
        )
    phases = []
    for index, (group, when) in enumerate(zip(groups, times, strict=True)):
        uid = group[0].series_instance_uid
        phases.append(
            PhaseInfo(
                index=index,
                role=PhaseRole.PRE_CONTRAST if index == 0 else PhaseRole.POST_CONTRAST,
                series_uid=uid,
                series_key=series_key(uid),
                time_from_pre_s=when - times[0],
                time_after_injection_s=when - injection,
                time_source=source,
                instances=_sort_by_position(group),
            )
        )
    return _Outcome(DceReason.ELIGIBLE, "", tuple(phases), injection_source, candidate.layout, candidate.series)


# ---- the classifier --------------------------------------------------------------------------


def _candidates(images: list[_Series], rules: DceRules) -> list[_Candidate]:
    """Multi-phase series and per-phase groups; sets roles/reasons of the rest."""
    candidates: list[_Candidate] = []
    singles: dict[tuple[Any, ...], list[_Series]] = defaultdict(list)
    for series in images:
        positions = _positions(series, rules)
        if positions is None:
            series.role, series.reason = SeriesRole.NON_DYNAMIC, "no usable slice geometry (position/orientation)"
            continue
        counts = set(Counter(positions).values())
        if counts == {1}:
            singles[_grid_signature(series, positions)].append(series)
            continue
        if len(counts) != 1:
            series.role, series.reason = SeriesRole.NON_DYNAMIC, "slice positions repeat irregularly"
            continue
        k = counts.pop()
        split = _split_multiphase(series, positions, k)
        if split is None:
            series.role = SeriesRole.NON_DYNAMIC
            series.reason = f"{k} images per position that no temporal attribute tells apart"
            continue
        groups, how = split
        candidates.append(_Candidate("multi-phase", [series], groups, how))
    for group in singles.values():
        evidence = [s for s in group if _has_dynamic_evidence(s, rules)]
        if len(group) >= 2 and (evidence or len(group) >= rules.min_phases):
            candidates.append(
                _Candidate("per-phase", group, [list(s.instances) for s in group], "one series per phase")
            )
            continue
        for series in group:
            series.role = SeriesRole.NON_DYNAMIC
            series.reason = "single acquisition; no other series on its grid forms a dynamic sequence"
    return candidates


def _assign_phase_roles(outcome: _Outcome, candidate: _Candidate) -> None:
    if candidate.layout == "multi-phase":
        series = candidate.series[0]
        series.role = SeriesRole.DYNAMIC_MULTIPHASE
        series.reason = f"dynamic series with {len(candidate.groups)} phases, split by {candidate.split}"
        series.phase_indices = tuple(p.index for p in outcome.phases)
        return
    by_uid = {p.series_uid: p for p in outcome.phases}
    for series in candidate.series:
        phase = by_uid.get(series.uid)
        series.role = SeriesRole.DYNAMIC_PHASE
        if phase is None:
            series.reason = "series of the dynamic acquisition"
            continue
        label = "pre-contrast" if phase.index == 0 else f"post-contrast {phase.index}"
        series.reason = (
            f"dynamic phase {phase.index} ({label}, {phase.time_from_pre_s:.0f} s after pre) by {phase.time_source}"
        )
        series.phase_indices = (phase.index,)


def _check_eligibility(outcome: _Outcome, series: list[_Series], rules: DceRules) -> _Outcome:
    phases = outcome.phases
    if len(phases) < rules.min_phases:
        return _Outcome(DceReason.TOO_FEW_PHASES, f"{len(phases)} phase(s), at least {rules.min_phases} needed", phases)
    if len(phases) > rules.max_phases:
        return _Outcome(DceReason.TOO_MANY_PHASES, f"{len(phases)} phases, at most {rules.max_phases}", phases)
    fewest = min(len(p.instances) for p in phases)
    if fewest < rules.min_slices:
        return _Outcome(
            DceReason.TOO_FEW_SLICES, f"a phase has {fewest} slice(s), at least {rules.min_slices} needed", phases
        )
    if rules.require_breast:
        dynamic = [i for p in phases for i in p.instances[:1]]
        texts = " ".join(f"{i.series_description} {i.protocol_name}" for i in dynamic)
        if not any(i.body_part == "BREAST" for i in dynamic) and not rules.matches("breast", texts):
            return _Outcome(DceReason.NOT_BREAST, "no BodyPartExamined BREAST and no breast naming", phases)
    from oncohabitat.dicomio.phases import PhaseAssemblyError, validate_phase_geometry

    try:
        validate_phase_geometry(phases, rules)
    except PhaseAssemblyError as exc:
        return _Outcome(DceReason.INCONSISTENT_GEOMETRY, f"{exc.reason}: {exc.message}", phases)
    return outcome


def classify_dce(instances: Sequence[InstanceInfo], rules: DceRules | None = None) -> DceClassification:
    """Classify the series of one study and order the phases of its dynamic acquisition.

    Never raises for unusual studies: the outcome says why it is not eligible.
    """
    rules = rules or DceRules()
    all_series = [_Series(uid, list(items)) for uid, items in group_by_series(instances).items()]
    images: list[_Series] = []
    for series in all_series:
        excluded = _exclusion(series, rules)
        if excluded is None:
            images.append(series)
        else:
            series.role, series.reason = excluded
    outcome: _Outcome
    if not any(s.first.modality == "MR" and s.first.kind is InstanceKind.IMAGE for s in all_series):
        outcome = _Outcome(DceReason.NO_MR_IMAGES, "the study holds no MR image series")
    else:
        candidates = _candidates(images, rules)
        if not candidates:
            outcome = _Outcome(
                DceReason.NO_DYNAMIC_SERIES, "no series (or group of series) with repeated phases on one grid"
            )
        elif len(candidates) > 1:
            for candidate in candidates:
                for series in candidate.series:
                    series.role, series.reason = SeriesRole.NON_DYNAMIC, "one of several competing dynamic candidates"
            outcome = _Outcome(
                DceReason.AMBIGUOUS_DYNAMIC,
                f"{len(candidates)} competing dynamic candidates (series on different grids or layouts)",
            )
        else:
            (candidate,) = candidates
            outcome = _order_phases(candidate, rules)
            if outcome.code is DceReason.ELIGIBLE:
                _assign_phase_roles(outcome, candidate)
                outcome = _check_eligibility(outcome, candidate.series, rules)
                outcome.layout = candidate.layout
            else:
                for series in candidate.series:
                    series.role, series.reason = (
                        SeriesRole.NON_DYNAMIC,
                        f"dynamic candidate not usable: {outcome.reason}",
                    )
                outcome.layout = candidate.layout
    eligible = outcome.code is DceReason.ELIGIBLE
    summaries = tuple(
        SeriesClassification(
            series_uid=s.uid,
            series_key=series_key(s.uid),
            modality=s.first.modality,
            sop_class_uid=s.first.sop_class_uid,
            instance_count=len(s.instances),
            role=s.role or SeriesRole.NON_DYNAMIC,
            reason=s.reason,
            phase_indices=s.phase_indices,
        )
        for s in all_series
    )
    message = (
        f"{len(outcome.phases)} phases ({outcome.layout}), times by {outcome.phases[0].time_source}"
        if eligible
        else outcome.reason
    )
    return DceClassification(
        eligible=eligible,
        reason_code=outcome.code,
        reason=message,
        layout=outcome.layout,
        phases=outcome.phases,
        series=summaries,
        injection_time_source=outcome.injection_source if eligible else "",
    )


def classify_study_files(paths: Iterable[str | PathLike[str]], rules: DceRules | None = None) -> DceClassification:
    """Scan the headers of a study's files and classify it (see :func:`classify_dce`)."""
    return classify_dce(scan_instances(paths), rules)


def rules_as_json(rules: DceRules) -> dict[str, Any]:
    """The rules as a JSON-ready mapping (the inverse of :meth:`DceRules.from_mapping`)."""
    payload = asdict(rules)
    payload["time_sources"] = list(rules.time_sources)
    return payload

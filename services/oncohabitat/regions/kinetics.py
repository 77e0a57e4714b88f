"""Derived DCE images: subtractions, enhancement maps and per-voxel kinetic parameters.

Notation: S0, S1, S2 are the phases chosen by :class:`~oncohabitat.regions.profile.KineticSettings`
(defaults: S0 = phase 0, S1 = phase 1, S2 = the last post-contrast phase), t0, t1, t2 their acquisition times
(s, relative to the pre-contrast phase); SM = S1, SL = S2; S_I uses ``intermediate_phase`` (default S1) and
S_L always the last post-contrast phase. Every map is computed in float64 and returned as float32 (z, y, x):

=======  ====================================================================================
S0       S0 as is
P<k>     post-contrast phase k as is
SUB<k>   P<k> - S0
SM0      SM - S0                      SL0   SL - S0
S_I      P[intermediate] - S0         S_L   P[last] - S0
M1       (SM - S0) / S0               M2    (SL - SM) / (SM - S0)
PE       (S1 - S0) / S0 x 100 (x 1 when ``pe_percent`` is false)
SER      (S1 - S0) / (S2 - S0)
WIS      (S1 - S0) / (t1 - t0)        per second, or per minute (x 60) with ``slope_time_unit = "min"``
WOS      (S1 - S2) / (t2 - t1)        idem; both divided by S0 (safe ratio) with ``relative_slopes``
=======  ====================================================================================

Safe division (M1, M2, PE, SER, relative slopes): where the denominator is degenerate the map takes
``fill_value`` (default 0). Degenerate means ``den <= epsilon`` with ``denominator = "positive"`` (default:
zero *and negative* baselines/enhancements give ``fill_value``) or ``|den| <= epsilon`` with ``"nonzero"``.
Results are finally clipped to +-:data:`MAX_ABS_VALUE`, so no map ever holds NaN or infinity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from oncohabitat.common.errors import InvalidInputError
from oncohabitat.regions import errors
from oncohabitat.regions.profile import KineticSettings, is_derived_name

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]

#: Every derived value is clipped to +-this (finite in float32).
MAX_ABS_VALUE = 1e30

_SECONDS_PER_UNIT = {"s": 1.0, "min": 60.0}


@dataclass(frozen=True)
class KineticRoles:
    """Phase index playing each role (None when the study has no such phase)."""

    s0: int
    s1: int
    s2: int | None
    intermediate: int
    last: int | None


def resolve_roles(settings: KineticSettings, indices: Iterable[int]) -> KineticRoles:
    """Roles of the profile resolved against the study's phase indices (``s2`` null = last phase)."""
    posts = sorted(i for i in indices if i >= 1)
    last = posts[-1] if posts else None
    s2 = settings.s2_phase if settings.s2_phase is not None else last
    intermediate = settings.intermediate_phase if settings.intermediate_phase is not None else settings.s1_phase
    return KineticRoles(s0=settings.s0_phase, s1=settings.s1_phase, s2=s2, intermediate=intermediate, last=last)


def _role(label: str, index: int | None) -> tuple[str, int | None]:
    return (label, index)


def phase_needs(name: str, roles: KineticRoles) -> list[tuple[str, int | None]]:
    """(role description, phase index) pairs that derived image ``name`` needs."""
    s0 = _role("S0 (pre-contrast phase)", roles.s0)
    s1 = _role("S1/SM (early post-contrast phase)", roles.s1)
    s2 = _role("S2/SL (late post-contrast phase)", roles.s2)
    if name.startswith("SUB") and name[3:].isdigit():
        return [s0, _role(f"post-contrast phase {name[3:]}", int(name[3:]))]
    if name.startswith("P") and name[1:].isdigit():
        return [_role(f"post-contrast phase {name[1:]}", int(name[1:]))]
    table: dict[str, list[tuple[str, int | None]]] = {
        "S0": [s0],
        "SM0": [s0, s1],
        "SL0": [s0, s2],
        "S_I": [s0, _role("intermediate post-contrast phase", roles.intermediate)],
        "S_L": [s0, _role("last post-contrast phase", roles.last)],
        "M1": [s0, s1],
        "M2": [s0, s1, s2],
        "PE": [s0, s1],
        "SER": [s0, s1, s2],
        "WIS": [s0, s1],
        "WOS": [s1, s2],
    }
    return table[name]


def check_available(names: Iterable[str], roles: KineticRoles, available: Iterable[int]) -> None:
    """Raise a clear error when a requested map needs a phase the study lacks.

    Raises:
        InvalidInputError: ``PHASE_MISSING`` naming the map, the role and the phase index, or
            ``DERIVED_IMAGE_UNKNOWN``.
    """
    have = sorted(set(available))
    for name in names:
        if not is_derived_name(name):
            raise InvalidInputError(errors.DERIVED_IMAGE_UNKNOWN, f"unknown derived image {name!r}", "profile_json")
        needs = phase_needs(name, roles)
        for label, index in needs:
            if index is None or index not in have:
                where = "which the study lacks" if index is not None else "and the study has no post-contrast phase"
                raise InvalidInputError(
                    errors.PHASE_MISSING,
                    f"{name} needs {label}"
                    + (f" = phase {index}" if index is not None else "")
                    + f", {where} (phases present: {have})",
                    "study.phases",
                )
        if roles.s2 is not None and any(label.startswith("S2") for label, _ in needs) and roles.s2 <= roles.s1:
            raise InvalidInputError(
                errors.PHASE_MISSING,
                f"{name} needs S2/SL (late post-contrast phase) after S1 = phase {roles.s1}, "
                f"but the last phase present is {roles.s2} (phases present: {have})",
                "study.phases",
            )


def check_times(names: Iterable[str], roles: KineticRoles, times_s: Mapping[int, float]) -> None:
    """Slopes need t0 < t1 (WIS) and t1 < t2 (WOS).

    Raises:
        InvalidInputError: ``PHASE_TIMES_INVALID``.
    """
    wanted = set(names)
    if "WIS" in wanted and not times_s[roles.s1] > times_s[roles.s0]:
        raise InvalidInputError(
            errors.PHASE_TIMES_INVALID,
            f"WIS needs t1 > t0, got t{roles.s1} = {times_s[roles.s1]} s and t{roles.s0} = {times_s[roles.s0]} s",
            "study.phases",
        )
    if "WOS" in wanted and roles.s2 is not None and not times_s[roles.s2] > times_s[roles.s1]:
        raise InvalidInputError(
            errors.PHASE_TIMES_INVALID,
            f"WOS needs t2 > t1, got t{roles.s2} = {times_s[roles.s2]} s and t{roles.s1} = {times_s[roles.s1]} s",
            "study.phases",
        )


def safe_ratio(numerator: FloatArray, denominator: FloatArray, settings: KineticSettings) -> FloatArray:
    """``numerator / denominator`` where the denominator is valid, ``settings.fill_value`` elsewhere."""
    if settings.denominator == "positive":
        valid = denominator > settings.epsilon
    else:
        valid = np.abs(denominator) > settings.epsilon
    out = np.full(np.broadcast(numerator, denominator).shape, settings.fill_value, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=valid)
    return out


def _finite32(values: FloatArray) -> Float32Array:
    clipped = np.clip(values, -MAX_ABS_VALUE, MAX_ABS_VALUE)
    return np.asarray(clipped, dtype=np.float32)


class _Calculator:
    """Computes maps on demand from phase arrays (float64), caching shared terms."""

    def __init__(
        self,
        phases: Mapping[int, FloatArray],
        times_s: Mapping[int, float],
        settings: KineticSettings,
        roles: KineticRoles,
    ) -> None:
        self.phases = phases
        self.times_s = times_s
        self.settings = settings
        self.roles = roles
        self._cache: dict[str, FloatArray] = {}

    def phase(self, index: int | None) -> FloatArray:
        assert index is not None  # guaranteed by check_available
        return self.phases[index]

    def sub(self, index: int | None) -> FloatArray:
        key = f"SUB{index}"
        if key not in self._cache:
            self._cache[key] = self.phase(index) - self.phase(self.roles.s0)
        return self._cache[key]

    def slope(self, difference: FloatArray, t_from: int, t_to: int | None) -> FloatArray:
        assert t_to is not None
        seconds = self.times_s[t_to] - self.times_s[t_from]
        slope = difference / (seconds / _SECONDS_PER_UNIT[self.settings.slope_time_unit])
        if self.settings.relative_slopes:
            return safe_ratio(slope, self.phase(self.roles.s0), self.settings)
        return slope

    def compute(self, name: str) -> FloatArray:
        roles, settings = self.roles, self.settings
        s0 = self.phase(roles.s0)
        if name == "S0":
            return s0
        if name.startswith("SUB") and name[3:].isdigit():
            return self.sub(int(name[3:]))
        if name.startswith("P") and name[1:].isdigit():
            return self.phase(int(name[1:]))
        simple = {"SM0": roles.s1, "SL0": roles.s2, "S_I": roles.intermediate, "S_L": roles.last}
        if name in simple:
            return self.sub(simple[name])
        if name in ("M1", "PE"):
            ratio = safe_ratio(self.sub(roles.s1), s0, settings)
            return ratio * 100.0 if name == "PE" and settings.pe_percent else ratio
        if name == "M2":
            return safe_ratio(self.phase(roles.s2) - self.phase(roles.s1), self.sub(roles.s1), settings)
        if name == "SER":
            return safe_ratio(self.sub(roles.s1), self.sub(roles.s2), settings)
        if name == "WIS":
            return self.slope(self.sub(roles.s1), roles.s0, roles.s1)
        if name == "WOS":
            return self.slope(self.phase(roles.s1) - self.phase(roles.s2), roles.s1, roles.s2)
        raise InvalidInputError(errors.DERIVED_IMAGE_UNKNOWN, f"unknown derived image {name!r}", "profile_json")


def compute_derived(
    names: Iterable[str],
    phases: Mapping[int, FloatArray],
    times_s: Mapping[int, float],
    settings: KineticSettings,
    roles: KineticRoles,
) -> dict[str, Float32Array]:
    """The requested maps (float32, same shape as the phases), after checking phases and times.

    Args:
        names: derived image names (see the module table).
        phases: float64 arrays (z, y, x) keyed by phase index (0 = pre-contrast).
        times_s: acquisition time (s) of every phase relative to the pre-contrast phase.
        settings: the profile's kinetic settings; ``roles`` from :func:`resolve_roles`.

    Raises:
        InvalidInputError: ``PHASE_MISSING``, ``PHASE_TIMES_INVALID`` or ``DERIVED_IMAGE_UNKNOWN``.
    """
    wanted = list(dict.fromkeys(names))
    check_available(wanted, roles, phases)
    check_times(wanted, roles, times_s)
    calculator = _Calculator(phases, times_s, settings, roles)
    return {name: _finite32(calculator.compute(name)) for name in wanted}

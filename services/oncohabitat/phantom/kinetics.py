"""Contrast-enhancement curves of every tissue and lesion compartment (the exact generating model).

Relative enhancement at time t (s) after contrast injection::

    E(t) = A * (1 - exp(-t / tau_in)) * exp(-t / tau_out)      for t > 0,   E(t) = 0 for t <= 0

(``tau_out = inf`` means no wash-out). The noise-free MR signal of a voxel is ``S(t) = S0 * (1 + E(t))``
times a static bias field, with ``S0`` the pre-contrast baseline of its tissue class.

Lesion compartments (label value in ``compartments.nrrd``):

====  ==========  ======  ========  =========  ==========================================================
code  name        A       tau_in s  tau_out s  shape
====  ==========  ======  ========  =========  ==========================================================
1     persistent  0.70    240       inf        keeps rising through the last phase (poorly perfused)
2     plateau     1.30    20        inf        reaches > 95 % of A by 60 s, flat afterwards (+-5 %)
3     wash-out    2.60    15        500        peaks at ~52 s, then falls ~18 % per 100 s (highly perfused)
====  ==========  ======  ========  =========  ==========================================================

All compartments share the baseline S0 = 280, so with S1 any post-contrast phase before the last one and S2
the last phase, PE = (S1-S0)/S0, SER = (S1-S0)/(S2-S0), WIS = (S1-S0)/(t1-t0) and WOS = (S1-S2)/(t2-t1)
all increase strictly from compartment 1 to 3 for every size preset (checked by the unit tests).
The necrotic core has S0 = 200 and does not enhance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from oncohabitat.phantom.anatomy import Tissue


@dataclass(frozen=True)
class EnhancementCurve:
    """``E(t) = A (1 - exp(-t/tau_in)) exp(-t/tau_out)``; times in s, E dimensionless (0.5 = +50 %)."""

    amplitude: float
    tau_in_s: float
    tau_out_s: float = math.inf

    def __call__(self, t_s: float) -> float:
        """Relative enhancement at ``t_s`` seconds after injection."""
        if t_s <= 0.0:
            return 0.0
        return self.amplitude * (1.0 - math.exp(-t_s / self.tau_in_s)) * math.exp(-t_s / self.tau_out_s)

    def as_dict(self) -> dict[str, float | None]:
        """JSON-friendly parameters (``tau_out_s`` None for no wash-out)."""
        tau_out = None if math.isinf(self.tau_out_s) else self.tau_out_s
        return {"amplitude": self.amplitude, "tau_in_s": self.tau_in_s, "tau_out_s": tau_out}


@dataclass(frozen=True)
class TissueKinetics:
    """Pre-contrast MR baseline ``s0`` (arbitrary units), its texture amplitude and enhancement curve."""

    s0: float
    texture: float
    curve: EnhancementCurve


#: Lesion compartment codes and names.
COMPARTMENT_NAMES = {1: "persistent", 2: "plateau", 3: "washout"}
#: Tissue label of each compartment code.
COMPARTMENT_TISSUE = {1: Tissue.LESION_PERSISTENT, 2: Tissue.LESION_PLATEAU, 3: Tissue.LESION_WASHOUT}

LESION_S0 = 280.0

#: Fat-suppressed T1-weighted baselines and curves of every tissue label.
TISSUE_KINETICS: dict[Tissue, TissueKinetics] = {
    Tissue.AIR: TissueKinetics(0.0, 0.0, EnhancementCurve(0.0, 1.0)),
    Tissue.SKIN: TissueKinetics(260.0, 0.03, EnhancementCurve(0.20, 120.0)),
    Tissue.BREAST_FAT: TissueKinetics(90.0, 0.05, EnhancementCurve(0.05, 120.0)),
    Tissue.FIBROGLANDULAR: TissueKinetics(320.0, 0.10, EnhancementCurve(0.25, 240.0)),
    Tissue.CHEST_FAT: TissueKinetics(90.0, 0.05, EnhancementCurve(0.05, 120.0)),
    Tissue.MUSCLE: TissueKinetics(240.0, 0.05, EnhancementCurve(0.50, 45.0)),
    Tissue.LUNG: TissueKinetics(25.0, 0.20, EnhancementCurve(0.10, 30.0)),
    Tissue.HEART: TissueKinetics(180.0, 0.03, EnhancementCurve(2.00, 8.0, 300.0)),
    Tissue.LESION_PERSISTENT: TissueKinetics(LESION_S0, 0.06, EnhancementCurve(0.70, 240.0)),
    Tissue.LESION_PLATEAU: TissueKinetics(LESION_S0, 0.06, EnhancementCurve(1.30, 20.0)),
    Tissue.LESION_WASHOUT: TissueKinetics(LESION_S0, 0.06, EnhancementCurve(2.60, 15.0, 500.0)),
    Tissue.NECROSIS: TissueKinetics(200.0, 0.04, EnhancementCurve(0.0, 1.0)),
}


def baseline_lut() -> npt.NDArray[np.float32]:
    """Pre-contrast baseline S0 indexed by tissue label."""
    return np.array([TISSUE_KINETICS[t].s0 for t in Tissue], dtype=np.float32)


def texture_lut() -> npt.NDArray[np.float32]:
    """Relative texture amplitude indexed by tissue label."""
    return np.array([TISSUE_KINETICS[t].texture for t in Tissue], dtype=np.float32)


def enhancement_lut(t_since_injection_s: float) -> npt.NDArray[np.float32]:
    """Signal factor ``1 + E(t)`` indexed by tissue label."""
    return np.array([1.0 + TISSUE_KINETICS[t].curve(t_since_injection_s) for t in Tissue], dtype=np.float32)


@dataclass(frozen=True)
class KineticParameters:
    """Voxel kinetic parameters: PE (%), SER (ratio), WIS and WOS (signal units per s)."""

    pe: float
    ser: float
    wis: float
    wos: float


def kinetic_parameters(signal: Sequence[float], times_s: Sequence[float], s1: int, s2: int) -> KineticParameters:
    """PE, SER, WIS, WOS of a signal curve with S0 = phase 0, S1 = phase ``s1`` and S2 = phase ``s2``.

    PE = (S1-S0)/S0 x 100; SER = (S1-S0)/(S2-S0); WIS = (S1-S0)/(t1-t0); WOS = (S1-S2)/(t2-t1).
    """
    s0, v1, v2 = signal[0], signal[s1], signal[s2]
    t0, t1, t2 = times_s[0], times_s[s1], times_s[s2]
    return KineticParameters(
        pe=(v1 - s0) / s0 * 100.0,
        ser=(v1 - s0) / (v2 - s0),
        wis=(v1 - s0) / (t1 - t0),
        wos=(v1 - v2) / (t2 - t1),
    )


def compartment_curve(code: int, t_since_injection_s: Sequence[float]) -> list[float]:
    """Noise-free, bias-free signal of lesion compartment ``code`` (1-3) at each time (s after injection)."""
    kinetics = TISSUE_KINETICS[COMPARTMENT_TISSUE[code]]
    return [kinetics.s0 * (1.0 + kinetics.curve(t)) for t in t_since_injection_s]

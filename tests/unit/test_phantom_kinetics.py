"""Unit tests of the phantom's generating curves (no I/O): shapes and perfusion ordering for every preset."""

from __future__ import annotations

import numpy as np
import pytest

from oncohabitat.phantom import SIZES, EnhancementCurve, SizePreset, kinetic_parameters
from oncohabitat.phantom.kinetics import compartment_curve


@pytest.mark.parametrize("preset", list(SIZES.values()), ids=list(SIZES))
def test_presets_have_pre_plus_at_least_three_post_phases_with_increasing_times(preset: SizePreset) -> None:
    assert preset.n_phases >= 4
    assert np.all(np.diff(preset.phase_times_s) > 0)
    assert preset.time_since_injection_s[0] < 0 < preset.time_since_injection_s[1]


def test_preset_phase_counts_and_matrices() -> None:
    assert SIZES["small"].n_phases == 6 and SIZES["small"].size_xyz == (64, 64, 32)
    assert SIZES["ispy"].n_phases == 4 and SIZES["ispy"].size_xyz == (256, 256, 60)
    assert SIZES["duke"].n_phases == 4 and SIZES["duke"].size_xyz == (512, 512, 170)


@pytest.mark.parametrize("preset", list(SIZES.values()), ids=list(SIZES))
def test_all_kinetic_maps_increase_from_compartment_1_to_3_for_any_s1(preset: SizePreset) -> None:
    last = preset.n_phases - 1
    for s1 in range(1, last):
        params = [
            kinetic_parameters(compartment_curve(code, preset.time_since_injection_s), preset.phase_times_s, s1, last)
            for code in (1, 2, 3)
        ]
        for name in ("pe", "ser", "wis", "wos"):
            values = [getattr(p, name) for p in params]
            assert values[0] < values[1] < values[2], (preset.name, s1, name, values)


@pytest.mark.parametrize("preset", list(SIZES.values()), ids=list(SIZES))
def test_noise_free_curve_shapes(preset: SizePreset) -> None:
    post = preset.time_since_injection_s[1:]
    persistent, plateau, washout = (np.array(compartment_curve(code, post)) for code in (1, 2, 3))
    assert np.all(np.diff(persistent) > 0)
    assert np.all(np.abs(plateau - plateau[0]) <= 0.06 * plateau[0])
    assert np.all(np.diff(washout) < 0) and washout[-1] < 0.9 * washout[0]


def test_enhancement_curve_formula() -> None:
    curve = EnhancementCurve(2.0, 10.0, 100.0)
    assert curve(-5.0) == 0.0 and curve(0.0) == 0.0
    assert curve(50.0) == pytest.approx(2.0 * (1 - np.exp(-5.0)) * np.exp(-0.5))
    assert EnhancementCurve(1.0, 20.0).as_dict()["tau_out_s"] is None

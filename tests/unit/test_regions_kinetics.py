"""Derived DCE maps: closed-form values, safe division, required phases."""

from __future__ import annotations

import numpy as np
import pytest

from oncohabitat.common.errors import InvalidInputError
from oncohabitat.phantom import kinetic_parameters
from oncohabitat.phantom.kinetics import compartment_curve
from oncohabitat.regions.kinetics import MAX_ABS_VALUE, compute_derived, resolve_roles
from oncohabitat.regions.profile import KineticSettings

TIMES = {0: 0.0, 1: 90.0, 2: 240.0, 3: 420.0}


def _phases(s0: np.ndarray, s1: np.ndarray, s2: np.ndarray, s3: np.ndarray) -> dict[int, np.ndarray]:
    return {0: s0, 1: s1, 2: s2, 3: s3}


def _derive(phases: dict[int, np.ndarray], names: list[str], **settings: object) -> dict[str, np.ndarray]:
    kinetic = KineticSettings.model_validate(settings)
    roles = resolve_roles(kinetic, phases)
    return compute_derived(names, phases, {i: TIMES[i] for i in phases}, kinetic, roles)


def test_maps_equal_closed_form_values_of_known_curves() -> None:
    rng = np.random.default_rng(3)
    shape = (3, 4, 5)
    s0 = rng.uniform(100.0, 300.0, shape)
    s1 = s0 * rng.uniform(1.2, 3.0, shape)
    s2 = s0 * rng.uniform(1.1, 2.5, shape)
    s3 = s0 * rng.uniform(1.05, 2.0, shape)
    names = ["S0", "P2", "SUB2", "SM0", "SL0", "S_I", "S_L", "M1", "M2", "PE", "SER", "WIS", "WOS"]
    maps = _derive(_phases(s0, s1, s2, s3), names)
    # defaults: S0 = phase 0, S1 = SM = phase 1, S2 = SL = last phase (3), intermediate = S1
    expected = {
        "S0": s0,
        "P2": s2,
        "SUB2": s2 - s0,
        "SM0": s1 - s0,
        "SL0": s3 - s0,
        "S_I": s1 - s0,
        "S_L": s3 - s0,
        "M1": (s1 - s0) / s0,
        "M2": (s3 - s1) / (s1 - s0),
        "PE": (s1 - s0) / s0 * 100.0,
        "SER": (s1 - s0) / (s3 - s0),
        "WIS": (s1 - s0) / 90.0,
        "WOS": (s1 - s3) / 330.0,
    }
    assert list(maps) == names
    for name, values in expected.items():
        assert maps[name].dtype == np.float32 and maps[name].shape == shape
        np.testing.assert_allclose(maps[name], values, rtol=1e-6, err_msg=name)


def test_maps_agree_with_the_phantom_generating_model() -> None:
    times = (0.0, 210.0, 360.0, 510.0)  # ispy preset, injection at 60 s
    phases, expected = {}, []
    curves = [compartment_curve(code, [t - 60.0 for t in times]) for code in (1, 2, 3)]
    for index in range(4):
        phases[index] = np.array([[[curve[index] for curve in curves]]])
    for curve in curves:
        expected.append(kinetic_parameters(curve, times, 1, 3))
    kinetic = KineticSettings()
    maps = compute_derived(
        ["PE", "SER", "WIS", "WOS"], phases, dict(enumerate(times)), kinetic, resolve_roles(kinetic, phases)
    )
    for column, params in enumerate(expected):
        assert maps["PE"][0, 0, column] == pytest.approx(params.pe, rel=1e-6)
        assert maps["SER"][0, 0, column] == pytest.approx(params.ser, rel=1e-6)
        assert maps["WIS"][0, 0, column] == pytest.approx(params.wis, rel=1e-6)
        assert maps["WOS"][0, 0, column] == pytest.approx(params.wos, rel=1e-6)
    assert np.all(np.diff(maps["PE"][0, 0]) > 0) and np.all(np.diff(maps["WOS"][0, 0]) > 0)


def test_phase_roles_units_and_relative_slopes_are_configurable() -> None:
    s0, s1, s2, s3 = (np.full((1, 1, 2), v) for v in (200.0, 500.0, 450.0, 400.0))
    maps = _derive(
        _phases(s0, s1, s2, s3),
        ["PE", "SER", "WIS", "WOS", "S_I"],
        s1_phase=1,
        s2_phase=2,
        intermediate_phase=2,
        pe_percent=False,
        slope_time_unit="min",
        relative_slopes=True,
    )
    assert maps["PE"][0, 0, 0] == pytest.approx(1.5)
    assert maps["SER"][0, 0, 0] == pytest.approx(300.0 / 250.0)
    assert maps["WIS"][0, 0, 0] == pytest.approx(300.0 / 1.5 / 200.0)
    assert maps["WOS"][0, 0, 0] == pytest.approx(50.0 / 2.5 / 200.0)
    assert maps["S_I"][0, 0, 0] == pytest.approx(250.0)


def test_zero_and_negative_denominators_give_the_fill_value_and_never_inf_or_nan() -> None:
    # voxel 0: S0 = 0; voxel 1: S2 == S0 (SER 0/0-like); voxel 2: S2 < S0 and S1 < S0 (negative enhancement)
    s0 = np.array([[[0.0, 100.0, 100.0]]])
    s1 = np.array([[[50.0, 150.0, 80.0]]])
    s3 = np.array([[[20.0, 100.0, 60.0]]])
    phases = _phases(s0, s1, s1, s3)
    names = ["M1", "M2", "PE", "SER", "WIS", "WOS"]
    maps = _derive(phases, names)
    for name in names:
        assert np.isfinite(maps[name]).all(), name
    assert maps["PE"][0, 0, 0] == 0.0 and maps["M1"][0, 0, 0] == 0.0  # S0 = 0 -> fill value
    assert maps["SER"][0, 0, 1] == 0.0  # S2 - S0 = 0
    assert maps["SER"][0, 0, 2] == 0.0  # S2 - S0 = -40 <= epsilon ("positive" policy)
    assert maps["M2"][0, 0, 2] == 0.0  # SM - S0 = -20
    assert maps["PE"][0, 0, 2] == pytest.approx(-20.0)  # a negative numerator is a real value
    signed = _derive(phases, ["SER", "M2"], denominator="nonzero", fill_value=-1.0)
    assert signed["SER"][0, 0, 2] == pytest.approx(-20.0 / -40.0)
    assert signed["M2"][0, 0, 2] == pytest.approx(-20.0 / -20.0)
    assert signed["SER"][0, 0, 1] == -1.0  # exactly zero stays degenerate
    tiny = _derive(_phases(np.full((1, 1, 1), 1e-300), s1[..., :1], s1[..., :1], s3[..., :1]), ["PE"], epsilon=1e-310)
    assert np.isfinite(tiny["PE"]).all() and tiny["PE"][0, 0, 0] == pytest.approx(MAX_ABS_VALUE, rel=1e-6)


def test_missing_late_phase_is_reported_with_its_role() -> None:
    s = np.ones((1, 1, 1))
    kinetic = KineticSettings()
    phases = {0: s, 1: 2 * s}
    roles = resolve_roles(kinetic, phases)
    assert compute_derived(["PE", "WIS"], phases, {0: 0.0, 1: 60.0}, kinetic, roles)["PE"][0, 0, 0] == 100.0
    for name in ("SER", "WOS", "M2"):
        with pytest.raises(InvalidInputError) as excinfo:
            compute_derived([name], phases, {0: 0.0, 1: 60.0}, kinetic, roles)
        assert excinfo.value.reason == "PHASE_MISSING"
        assert "S2/SL (late post-contrast phase)" in excinfo.value.public_message
        assert name in excinfo.value.public_message


def test_missing_phases_name_the_role_and_index() -> None:
    s = np.ones((1, 1, 1))
    kinetic = KineticSettings(s1_phase=2)
    phases = {0: s, 1: s, 3: s}
    with pytest.raises(InvalidInputError) as excinfo:
        compute_derived(["PE"], phases, {0: 0.0, 1: 60.0, 3: 180.0}, kinetic, resolve_roles(kinetic, phases))
    assert excinfo.value.reason == "PHASE_MISSING"
    assert "S1/SM (early post-contrast phase) = phase 2" in excinfo.value.public_message
    only_post = {1: s, 2: s}
    with pytest.raises(InvalidInputError, match=r"S0 \(pre-contrast phase\) = phase 0"):
        compute_derived(
            ["SUB2"], only_post, {1: 60.0, 2: 120.0}, KineticSettings(), resolve_roles(KineticSettings(), only_post)
        )


def test_slopes_need_increasing_times() -> None:
    s = np.ones((1, 1, 1))
    kinetic = KineticSettings()
    phases = {0: s, 1: s, 2: s}
    with pytest.raises(InvalidInputError) as excinfo:
        compute_derived(["WOS"], phases, {0: 0.0, 1: 120.0, 2: 120.0}, kinetic, resolve_roles(kinetic, phases))
    assert excinfo.value.reason == "PHASE_TIMES_INVALID"
    with pytest.raises(InvalidInputError, match="WIS needs t1 > t0"):
        compute_derived(["WIS"], phases, {0: 0.0, 1: 0.0, 2: 120.0}, kinetic, resolve_roles(kinetic, phases))

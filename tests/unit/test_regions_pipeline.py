"""build_regions end to end on a phantom: regions, grids, restriction to the breast, normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from oncohabitat.common.errors import InvalidInputError
from oncohabitat.common.phases import select_phases
from oncohabitat.regions.pipeline import RegionsResult, build_regions
from oncohabitat.regions.profile import RegionProfile
from tests.unit.test_regions_phantom_support import LoadedPhantom, load_phantom


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> LoadedPhantom:
    return load_phantom(tmp_path_factory.mktemp("small"), "small", seed=3)


def _run(phantom: LoadedPhantom, **profile: object) -> RegionsResult:
    return build_regions(select_phases(phantom.phases), phantom.tumour, RegionProfile.model_validate(profile))


def _map(result: RegionsResult, kind: str) -> np.ndarray:
    return next(m.array for m in result.maps if m.kind == kind)


def test_default_regions_names_and_grid(small: LoadedPhantom) -> None:
    result = _run(small)
    assert [m.kind for m in result.maps] == ["tumour", "habitats", "peritumoral_ring", "stroma_band", "breast"]
    names = [entry.name for m in result.maps for entry in m.labels]
    assert names == [
        "tumour",
        "habitat_1",
        "habitat_2",
        "habitat_3",
        "peritumoral_ring_5mm",
        "stroma_band_20mm",
        "breast_right",
        "breast_left",
    ]
    # crop = tumour box + 20 mm (+1 voxel) on the 3 mm grid: 8 voxels each side where the volume allows
    assert all(m.array.shape == result.box.shape == result.box.shape for m in result.maps)
    np.testing.assert_array_equal(_map(result, "tumour"), small.tumour[result.box.slices])
    assert np.prod(result.box.shape) < 0.5 * small.tumour.size
    assert set(result.derived_images) == {"PE", "SER", "WIS", "WOS"}
    for values in result.derived_images.values():
        assert values.dtype == np.float32 and np.isfinite(values).all()
    stats = {s.region: s for s in result.statistics}
    assert stats["tumour"].voxel_count == int(small.tumour.sum())
    assert stats["tumour"].volume_ml == pytest.approx(small.tumour.sum() * 0.027)
    assert stats["breast"].voxel_count == stats["breast_right"].voxel_count + stats["breast_left"].voxel_count
    assert len(result.msi_features) == 22
    assert result.tumour_side == ("left" if small.study.lesion and small.study.lesion.side == "L" else "right")


def test_rings_exclude_the_tumour_and_stay_in_the_tumour_side_breast(small: LoadedPhantom) -> None:
    result = _run(small)
    tumour = _map(result, "tumour") > 0
    breast = _map(result, "breast")
    side = 2 if result.tumour_side == "left" else 1
    for kind in ("peritumoral_ring", "stroma_band"):
        region = _map(result, kind) > 0
        assert region.any() and not (region & tumour).any()
        assert np.all(breast[region] == side)
    ring, stroma = _map(result, "peritumoral_ring") > 0, _map(result, "stroma_band") > 0
    assert not (ring & ~stroma).any()
    free = _run(small, restrict_to_breast=False)
    assert (_map(free, "stroma_band") > 0).sum() > stroma.sum()


def test_full_output_grid_holds_the_crop(small: LoadedPhantom) -> None:
    crop = _run(small)
    full = _run(small, output_grid="full")
    assert full.box.shape == small.tumour.shape
    for a, b in zip(crop.maps, full.maps, strict=True):
        np.testing.assert_array_equal(b.array[crop.box.slices], a.array)
        outside = np.ones(b.array.shape, dtype=bool)
        outside[crop.box.slices] = False
        if a.kind != "breast":
            assert not b.array[outside].any()
    np.testing.assert_allclose(full.derived_images["PE"][crop.box.slices], crop.derived_images["PE"])


def test_two_dimensional_mode_keeps_bands_in_tumour_slices(small: LoadedPhantom) -> None:
    result = _run(small, mode="2d")
    tumour_slices = (_map(result, "tumour") > 0).any(axis=(1, 2))
    ring_slices = (_map(result, "stroma_band") > 0).any(axis=(1, 2))
    assert ring_slices.any() and not (ring_slices & ~tumour_slices).any()


def test_breast_normalisation_scales_signals_but_not_ratios(small: LoadedPhantom) -> None:
    images = ["S0", "SUB1", "PE", "SER", "M2"]
    plain = _run(small, derived_images=images)
    normalised = _run(small, derived_images=images, intensity_normalisation="breast_s0_mean")
    factor = normalised.normalisation_factor
    assert factor is not None and 50.0 < factor < 400.0
    tumour = small.tumour[plain.box.slices]
    np.testing.assert_allclose(normalised.derived_images["S0"], plain.derived_images["S0"] / factor, rtol=1e-5)
    np.testing.assert_allclose(normalised.derived_images["SUB1"], plain.derived_images["SUB1"] / factor, rtol=1e-4)
    for name in ("PE", "SER"):
        np.testing.assert_allclose(
            normalised.derived_images[name][tumour], plain.derived_images[name][tumour], rtol=1e-4
        )


def test_missing_phase_is_reported_before_any_work(small: LoadedPhantom) -> None:
    two = select_phases(small.phases[:2])
    with pytest.raises(InvalidInputError) as excinfo:
        build_regions(two, small.tumour, RegionProfile())
    assert excinfo.value.reason == "PHASE_MISSING"
    assert "S2/SL (late post-contrast phase)" in excinfo.value.public_message
    # a profile that needs only S0 and S1 runs on the same two phases
    pe_only = RegionProfile.model_validate(
        {"habitats": {"features": ["PE", "WIS"]}, "derived_images": ["PE"], "statistics_images": ["PE"]}
    )
    assert build_regions(two, small.tumour, pe_only).habitats is not None

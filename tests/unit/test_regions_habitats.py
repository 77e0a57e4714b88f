"""Habitats on phantom studies with known compartments; K choice, supervoxels, frozen centroids, size rule."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from oncohabitat.common.errors import InvalidInputError, NotFoundError, PreconditionError
from oncohabitat.common.phases import select_phases
from oncohabitat.regions.frozen import (
    FrozenHabitats,
    fit_population_habitats,
    load_frozen_habitats,
    write_frozen_habitats,
)
from oncohabitat.regions.habitats import build_habitats, voxel_features
from oncohabitat.regions.pipeline import RegionsResult, build_regions
from oncohabitat.regions.profile import FrozenCentroidsRef, HabitatSettings, RegionProfile, SupervoxelSettings
from tests.unit.test_regions_phantom_support import LoadedPhantom, load_phantom

KINETIC = ["WIS", "WOS", "SER", "PE"]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> LoadedPhantom:
    return load_phantom(tmp_path_factory.mktemp("small"), "small", seed=1)


@pytest.fixture(scope="module")
def ispy(tmp_path_factory: pytest.TempPathFactory) -> LoadedPhantom:
    return load_phantom(tmp_path_factory.mktemp("ispy"), "ispy", seed=2)


def _run(phantom: LoadedPhantom, profile: RegionProfile, frozen: FrozenHabitats | None = None) -> RegionsResult:
    return build_regions(select_phases(phantom.phases), phantom.tumour, profile, frozen)


def _agreement(phantom: LoadedPhantom, result: RegionsResult) -> tuple[float, np.ndarray]:
    assert result.habitats is not None
    tumour = phantom.tumour[result.box.slices]
    truth = phantom.compartments[result.box.slices][tumour]
    found = result.habitats.labels[tumour]
    confusion = np.array([[np.sum((truth == t) & (found == h)) for h in (1, 2, 3)] for t in (1, 2, 3)])
    return float(adjusted_rand_score(truth, found)), confusion


def _assert_matches_compartments(phantom: LoadedPhantom, result: RegionsResult) -> None:
    ari, confusion = _agreement(phantom, result)
    assert ari >= 0.8, confusion
    # after the perfusion ordering, habitat k is mostly compartment k (1 persistent ... 3 wash-out)
    assert list(confusion.argmax(axis=0)) == [0, 1, 2], confusion


@pytest.mark.parametrize("name", ["small", "ispy"])
def test_per_patient_habitats_recover_the_compartments(name: str, request: pytest.FixtureRequest) -> None:
    phantom: LoadedPhantom = request.getfixturevalue(name)
    result = _run(phantom, RegionProfile())
    _assert_matches_compartments(phantom, result)
    stats = {s.region: s for s in result.statistics}
    for parameter in KINETIC:  # seed 001: every parameter increases from habitat 1 to 3
        means = [stats[f"habitat_{k}"].mean_values[parameter] for k in (1, 2, 3)]
        assert means[0] < means[1] < means[2], (parameter, means)
    counts = [stats[f"habitat_{k}"].voxel_count for k in (1, 2, 3)]
    assert sum(counts) == int(phantom.tumour.sum())
    again = _run(phantom, RegionProfile())
    assert again.habitats is not None and result.habitats is not None
    np.testing.assert_array_equal(again.habitats.labels, result.habitats.labels)


def test_two_step_supervoxel_habitats_recover_the_compartments(small: LoadedPhantom) -> None:
    profile = RegionProfile.model_validate({"habitats": {"supervoxels": {"n_segments": 40}}})
    _assert_matches_compartments(small, _run(small, profile))


@pytest.mark.parametrize("criterion", ["calinski_harabasz", "silhouette"])
def test_k_is_chosen_by_the_criterion(criterion: str) -> None:
    rng = np.random.default_rng(0)
    tumour = np.ones((4, 10, 10), dtype=bool)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    which = rng.integers(0, 4, tumour.sum())
    points = centres[which] + rng.normal(0.0, 0.5, (tumour.sum(), 2))
    maps = {"PE": points[:, 0].reshape(tumour.shape), "SER": points[:, 1].reshape(tumour.shape)}
    settings = HabitatSettings(features=["PE", "SER"], k=None, k_range=(2, 6), criterion=criterion)  # type: ignore[arg-type]
    result = build_habitats(tumour, maps, settings, (1.0, 1.0, 1.0))
    assert result.k == 4
    assert adjusted_rand_score(which, result.labels[tumour]) == pytest.approx(1.0)


def _frozen_file(tmp_path: Path, model: FrozenHabitats) -> FrozenCentroidsRef:
    digest = write_frozen_habitats(tmp_path / "bundle" / "1.0.0" / "habitats.json", model)
    return FrozenCentroidsRef(file="bundle/1.0.0/habitats.json", sha256=digest)


def _features_of(phantom: LoadedPhantom) -> np.ndarray:
    result = _run(phantom, RegionProfile(derived_images=KINETIC))
    return voxel_features(phantom.tumour[result.box.slices], result.derived_images, KINETIC)


def test_frozen_centroids_from_a_verified_bundle_file(
    tmp_path: Path, small: LoadedPhantom, ispy: LoadedPhantom
) -> None:
    model = fit_population_habitats([_features_of(ispy), _features_of(small)], KINETIC, k=3)
    reference = _frozen_file(tmp_path, model)
    loaded = load_frozen_habitats(tmp_path, reference)
    np.testing.assert_array_equal(loaded.centroids, model.centroids)
    profile = RegionProfile.model_validate({"habitats": {"mode": "frozen", "frozen_centroids": reference.model_dump()}})
    for phantom in (small, ispy):
        _assert_matches_compartments(phantom, _run(phantom, profile, loaded))
    # two-step: per-patient supervoxels assigned to the population centroids
    two_step = profile.model_copy(
        update={"habitats": profile.habitats.model_copy(update={"supervoxels": SupervoxelSettings(n_segments=40)})}
    )
    _assert_matches_compartments(small, _run(small, two_step, loaded))


def test_tampered_missing_or_unreachable_centroid_files_are_refused(tmp_path: Path) -> None:
    model = FrozenHabitats(
        ("PE", "SER"),
        fit_population_habitats([np.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0], [6.0, 6.0]])], ["PE", "SER"], 2).scaler,
        np.array([[-1.0, -1.0], [1.0, 1.0]]),
    )
    reference = _frozen_file(tmp_path, model)
    path = tmp_path / reference.file
    path.write_bytes(path.read_bytes().replace(b"-1.0", b"-2.0", 1))
    with pytest.raises(PreconditionError) as excinfo:
        load_frozen_habitats(tmp_path, reference)
    assert excinfo.value.reason == "CENTROIDS_HASH_MISMATCH"
    with pytest.raises(NotFoundError):
        load_frozen_habitats(tmp_path, FrozenCentroidsRef(file="nope.json", sha256=reference.sha256))
    with pytest.raises(PreconditionError, match="models directory"):
        load_frozen_habitats(None, reference)
    path.write_bytes(b'{"format": "something else"}')
    with pytest.raises(InvalidInputError) as invalid:
        load_frozen_habitats(tmp_path, reference.model_copy(update={"sha256": _sha256(path)}))
    assert invalid.value.reason == "CENTROIDS_INVALID"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_frozen_centroids_must_fit_the_profile(small: LoadedPhantom) -> None:
    model = fit_population_habitats([_features_of(small)], KINETIC, k=3)
    settings = HabitatSettings(
        mode="frozen",
        features=["PE", "SER", "WIS", "WOS"],
        frozen_centroids=FrozenCentroidsRef(file="x", sha256="0" * 64),
    )
    tumour = np.ones((2, 3, 3), dtype=bool)
    maps = {name: np.zeros(tumour.shape) for name in KINETIC}
    with pytest.raises(InvalidInputError, match="frozen centroids are for features"):
        build_habitats(tumour, maps, settings, (1.0, 1.0, 1.0), model)
    with pytest.raises(InvalidInputError, match="K = 3"):
        build_habitats(tumour, maps, settings.model_copy(update={"features": KINETIC, "k": 4}), (1.0, 1.0, 1.0), model)


def test_empty_and_undersized_habitats_have_missing_statistics(small: LoadedPhantom) -> None:
    model = fit_population_habitats([_features_of(small)], KINETIC, k=3)
    far = np.vstack([model.centroids, np.full((1, 4), 1e3)])  # a 4th habitat no voxel can reach
    four = FrozenHabitats(model.features, model.scaler, far)
    profile = RegionProfile.model_validate(
        {
            "habitats": {
                "mode": "frozen",
                "k": 4,
                "min_voxels": 129,
                "frozen_centroids": {"file": "x.json", "sha256": "0" * 64},
            }
        }
    )
    result = _run(small, profile, four)
    assert result.habitats is not None
    counts = result.habitats.counts
    assert counts[3] == 0 and sum(counts) == int(small.tumour.sum())
    habitat_map = next(m for m in result.maps if m.kind == "habitats")
    listed = {entry.name for entry in habitat_map.labels}
    stats = {s.region: s for s in result.statistics}
    for k in range(1, 5):
        name = f"habitat_{k}"
        assert stats[name].voxel_count == counts[k - 1]
        if counts[k - 1] >= 129:
            assert name in listed and set(stats[name].mean_values) == set(KINETIC)
        else:  # undersized or empty: left out of the label table, no means (missing, not garbage)
            assert name not in listed and stats[name].mean_values == {}
    assert "habitat_4" not in listed
    assert np.isin(habitat_map.array[small.tumour[result.box.slices]], [1, 2, 3]).all()


def test_tiny_tumour_is_not_clustered(small: LoadedPhantom) -> None:
    tumour = np.zeros_like(small.tumour)
    index = tuple(np.argwhere(small.tumour)[0])
    tumour[index] = True
    result = build_regions(select_phases(small.phases), tumour, RegionProfile())
    assert result.habitats is not None and not result.habitats.clustered
    assert not result.habitats.labels.any() and result.msi_features == {}
    habitat_map = next(m for m in result.maps if m.kind == "habitats")
    assert habitat_map.labels == ()

"""RegionProfile parsing: defaults (seed 001 reading), strictness, curated errors."""

from __future__ import annotations

import json

import pytest

from oncohabitat.common.errors import InvalidInputError
from oncohabitat.regions.profile import RegionProfile, parse_profile


def test_defaults_are_the_seed_001_reading() -> None:
    profile = parse_profile("")
    assert profile == parse_profile("{}") == RegionProfile()
    assert profile.ring_width_mm == 5.0 and profile.restrict_to_breast and profile.mode == "3d"
    assert profile.habitats.k == 3 and profile.habitats.mode == "per_patient"
    assert profile.habitats.features == ["WIS", "WOS", "SER", "PE"]
    assert (profile.kinetics.s0_phase, profile.kinetics.s1_phase, profile.kinetics.s2_phase) == (0, 1, None)
    assert profile.msi.neighbourhood == "2d-8"
    assert profile.margin_mm() == 20.0


def test_hash_is_canonical_and_changes_with_content() -> None:
    a = parse_profile(json.dumps({"ring_width_mm": 5.0, "mode": "3d"}))
    b = parse_profile(json.dumps({"mode": "3d", "ring_width_mm": 5}))
    assert a.sha256() == b.sha256() == RegionProfile().sha256()
    assert parse_profile('{"ring_width_mm": 6}').sha256() != a.sha256()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"ring_width": 5}', "ring_width"),
        ('{"ring_width_mm": -1}', "ring_width_mm"),
        ('{"derived_images": ["PE", "XYZ"]}', "XYZ"),
        ('{"habitats": {"mode": "frozen"}}', "frozen_centroids"),
        ('{"habitats": {"k": null}}', "k or k_range"),
        ('{"habitats": {"k": null, "k_range": [5, 2]}}', "k_range"),
        (
            '{"habitats": {"mode": "frozen", "frozen_centroids": {"file": "../x.json", "sha256": "' + "a" * 64 + '"}}}',
            "relative POSIX path",
        ),
        ('{"habitats": {"mode": "frozen", "frozen_centroids": {"file": "x.json", "sha256": "ABC"}}}', "SHA-256"),
        ('{"kinetics": {"s1_phase": 2, "s2_phase": 2}}', "s2_phase"),
        ('{"breast": {"enabled": false}}', "breast.enabled"),
        ('{"habitats": {"enabled": false}}', "msi needs habitats"),
    ],
)
def test_invalid_profiles_are_refused_with_a_curated_message(text: str, fragment: str) -> None:
    with pytest.raises(InvalidInputError) as excinfo:
        parse_profile(text)
    assert excinfo.value.reason == "PROFILE_INVALID"
    assert fragment in excinfo.value.public_message


def test_other_papers_are_profiles_not_code() -> None:
    seed_004 = parse_profile(
        json.dumps(
            {
                "ring_width_mm": None,
                "stroma_width_mm": 20.0,
                "intensity_normalisation": "breast_s0_mean",
                "derived_images": ["S0", "S_I", "S_L"],
                "statistics_images": [],
                "habitats": {"enabled": False},
                "msi": {"enabled": False},
            }
        )
    )
    assert seed_004.margin_mm() == 20.0
    seed_002 = parse_profile(json.dumps({"derived_images": ["S0", "SM0", "SL0", "M1", "M2"], "ring_width_mm": None}))
    assert seed_002.derived_images == ["S0", "SM0", "SL0", "M1", "M2"]
    indexed = parse_profile('{"derived_images": ["P2", "SUB3"]}')
    assert indexed.derived_images == ["P2", "SUB3"]

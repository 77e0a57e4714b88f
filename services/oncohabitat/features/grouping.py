"""From a plan's canonical names to the work: one group per (image, filter), one pass per (region, image, filter).

A *group* is what one worker prepares once: an image, normalised, then filtered by one pyradiomics image type
(``Original``, ``Wavelet``, ``LoG`` ...). Its *passes* are the regions computed on that filtered image, each
with only the feature classes and features the plan names for that (region, filtered image). Shape features
belong to the ``Original`` group of their image. Kinetic names (``<region>/kinetic-<stat>/<feature>``) become
the same feature on every phase S0..SN; the phase roles ``SM`` / ``SL`` become the phases the region profile
assigns them (``kinetics.s1_phase`` / ``kinetics.s2_phase``, default S1 and the last phase).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from oncohabitat.bundles.canonical import CanonicalName
from oncohabitat.bundles.names import SHAPE_CLASSES, FeatureName
from oncohabitat.bundles.plan import ExtractionPlan

#: (region, concrete image, pyradiomics feature name): one value a pyradiomics pass produces.
Key = tuple[str, str, str]


@dataclass
class RegionPass:
    """One region on one filtered image: pyradiomics image name -> class -> features (insertion order)."""

    region: str
    wanted: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def add(self, name: FeatureName) -> None:
        """Ask for one pyradiomics feature."""
        features = self.wanted.setdefault(name.image_name, {}).setdefault(name.feature_class, [])
        if name.feature not in features:
            features.append(name.feature)

    def needs_shape(self) -> bool:
        """Whether a shape class is asked for."""
        return any(cls in SHAPE_CLASSES for classes in self.wanted.values() for cls in classes)


@dataclass
class ImageGroup:
    """One (image, pyradiomics image type) preparation and the region passes on it."""

    image: str
    image_type: str
    passes: dict[str, RegionPass] = field(default_factory=dict)

    def image_names(self) -> set[str]:
        """pyradiomics image names (e.g. ``wavelet-LLH``) any pass needs."""
        return {image_name for p in self.passes.values() for image_name in p.wanted}


def phase_role_images(plan: ExtractionPlan, phases: Sequence[str]) -> dict[str, str]:
    """``{"SM": "S<k>", "SL": "S<k>"}`` from the plan's region profile (defaults: S1, the last phase)."""
    kinetics = plan.region_profile.get("kinetics")
    settings = kinetics if isinstance(kinetics, dict) else {}
    s1 = settings.get("s1_phase", 1)
    s2 = settings.get("s2_phase")
    last = len(phases) - 1
    return {"SM": f"S{s1}", "SL": f"S{s2 if isinstance(s2, int) else last}"}


def concrete_image(parsed: CanonicalName, roles: dict[str, str]) -> str:
    """The image a radiomics name is computed on (a role resolved to its phase)."""
    return roles.get(parsed.image, parsed.image)


def radiomics_keys(plan: ExtractionPlan, phases: Sequence[str]) -> dict[str, list[Key]]:
    """Canonical name -> the pyradiomics values it needs (one for radiomics names, one per phase for kinetic)."""
    roles = phase_role_images(plan, phases)
    keys: dict[str, list[Key]] = {}
    for parsed in plan.parsed_features():
        if parsed.radiomics is None:
            continue
        if parsed.family == "kinetic":
            keys[parsed.full] = [(parsed.region, phase, parsed.feature) for phase in phases]
        else:
            keys[parsed.full] = [(parsed.region, concrete_image(parsed, roles), parsed.feature)]
    return keys


def build_groups(keys: Sequence[Key], names: dict[str, FeatureName]) -> list[ImageGroup]:
    """Group the needed pyradiomics values (``names`` maps a pyradiomics name to its parse) by image and filter.

    Groups come out in a stable order: by image, then image type, in first-appearance order.
    """
    groups: dict[tuple[str, str], ImageGroup] = {}
    for region, image, feature in keys:
        parsed = names[feature]
        group = groups.setdefault((image, parsed.image_type), ImageGroup(image, parsed.image_type))
        group.passes.setdefault(region, RegionPass(region)).add(parsed)
    return list(groups.values())

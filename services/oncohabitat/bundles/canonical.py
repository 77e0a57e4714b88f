"""The one feature naming scheme of the platform: ``<region>/<image>/<feature>``.

Bundles, the features service, training tables, stored results and the SR all name a model input this way.
This module is the grammar's only parser; it imports no feature library (the scoring service parses names
too). Grammar (``docs/feature-names.md`` shows it with examples)::

    name     := region "/" image "/" feature
    region   := "tumour" | "habitat_" K | "ring_" WIDTH "mm" | "stroma_" WIDTH "mm" | "breast" | "parenchyma"
    image    := PHASE | DERIVED | "msi" | "stats" | "kinetic-" STAT
    PHASE    := "S" INDEX | "SM" | "SL"            S0 = pre-contrast, S1..SN = post-contrast in acquisition order,
                                                   SM / SL = the roles "intermediate" / "late" post-contrast phase
    DERIVED  := "SM0" | "SL0" | "M1" | "M2" | "PE" | "SER" | "WIS" | "WOS" | "S_I" | "S_L" | "SUB" INDEX
    STAT     := "mean" | "variance" | "skewness" | "kurtosis"
    feature  := a pyradiomics name "<filter>_<class>_<feature>"   (on a phase, a derived image or kinetic-STAT)
              | an MSI feature name, e.g. "msi_contrast"          (image "msi", region "tumour" only)
              | a statistic: "volume_ml" | "voxel_count" | "fraction" | "mean_" DERIVED   (image "stats")

``K`` is a habitat number 1..9, ``WIDTH`` a positive width in mm written as Python's ``f"{w:g}"`` (``5``,
``2.5``), ``INDEX`` a non-negative integer without leading zeros. Examples: ``tumour/S0/original_shape_Sphericity``,
``habitat_2/SER/wavelet-LLH_firstorder_Mean``, ``ring_5mm/SM0/log-sigma-2-0-mm-3D_glszm_ZoneEntropy``,
``tumour/msi/msi_norm_1_2``, ``tumour/kinetic-variance/original_glcm_Contrast``, ``habitat_1/stats/fraction``.

``kinetic-STAT`` (seed 001's "kinetic features") is the statistic, over the DCE phases S0..SN in order, of the
feature computed on each phase; shape features do not vary over phases and are refused there.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Final, Literal

from oncohabitat.bundles.names import SHAPE_CLASSES, FeatureName, parse_feature_name

SEPARATOR: Final = "/"

#: Derived images the regions service computes (formulas in :mod:`oncohabitat.regions.kinetics`).
DERIVED_IMAGES: Final = frozenset({"SM0", "SL0", "M1", "M2", "PE", "SER", "WIS", "WOS", "S_I", "S_L"})
#: Statistics over the DCE phases that make a ``kinetic-<stat>`` image.
KINETIC_STATS: Final = ("mean", "variance", "skewness", "kurtosis")
#: Fixed region names (besides ``habitat_K``, ``ring_<w>mm``, ``stroma_<w>mm``).
FIXED_REGIONS: Final = frozenset({"tumour", "breast", "parenchyma"})
#: Statistics of the ``stats`` family besides ``mean_<DERIVED>``.
FIXED_STATS: Final = frozenset({"volume_ml", "voxel_count", "fraction"})
#: MSI feature names for K habitats: 4 GLCM-style, then (K + K(K+1)/2 cells) counts and normalised counts.
MSI_GLCM_NAMES: Final = ("msi_contrast", "msi_homogeneity", "msi_correlation", "msi_energy")

Family = Literal["radiomics", "kinetic", "msi", "stats"]

_HABITAT = re.compile(r"^habitat_([1-9])$")
_BAND = re.compile(r"^(ring|stroma)_((?:0|[1-9][0-9]*)(?:\.[0-9]+)?)mm$")
_PHASE = re.compile(r"^S(0|[1-9][0-9]*)$")
_SUB = re.compile(r"^SUB([1-9][0-9]*)$")
_MSI = re.compile(r"^msi_(?:contrast|homogeneity|correlation|energy|(?:count|norm)_([0-9])_([0-9]))$")


class FeatureNameError(ValueError):
    """A name that does not follow the grammar; ``token`` is the offending part (``str(exc)`` names it)."""

    def __init__(self, name: str, token: str, problem: str) -> None:
        super().__init__(f"feature name {name!r}: {problem} ({token!r})")
        self.name = name
        self.token = token


@dataclass(frozen=True)
class CanonicalName:
    """The parts of a canonical feature name.

    Attributes:
        full: the name, e.g. ``"habitat_2/SER/original_firstorder_Mean"``.
        region: ``"tumour"``, ``"habitat_2"``, ``"ring_5mm"``, ``"stroma_20mm"``, ``"breast"``, ``"parenchyma"``.
        image: phase, role, derived image, ``"msi"``, ``"stats"`` or ``"kinetic-<stat>"``.
        feature: the last part (a pyradiomics name, an MSI name or a statistic).
        family: ``"radiomics"`` (pyradiomics on a phase or derived image), ``"kinetic"``, ``"msi"``, ``"stats"``.
        radiomics: the parsed pyradiomics name for the radiomics and kinetic families, else None.
    """

    full: str
    region: str
    image: str
    feature: str
    family: Family
    radiomics: FeatureName | None

    @property
    def kinetic_stat(self) -> str | None:
        """``"mean"`` .. ``"kurtosis"`` for the kinetic family, else None."""
        return self.image.removeprefix("kinetic-") if self.family == "kinetic" else None

    @property
    def habitat(self) -> int | None:
        """The habitat number of a ``habitat_K`` region, else None."""
        match = _HABITAT.match(self.region)
        return int(match.group(1)) if match else None

    @property
    def band_width_mm(self) -> float | None:
        """The width (mm) of a ``ring_<w>mm`` / ``stroma_<w>mm`` region, else None."""
        match = _BAND.match(self.region)
        return float(match.group(2)) if match else None


def is_region(token: str) -> bool:
    """Whether ``token`` is a region of the grammar."""
    return token in FIXED_REGIONS or bool(_HABITAT.match(token)) or _band_ok(token)


def _band_ok(token: str) -> bool:
    match = _BAND.match(token)
    if match is None:
        return False
    width = match.group(2)
    return float(width) > 0 and f"{float(width):g}" == width


def band_region(kind: Literal["ring", "stroma"], width_mm: float) -> str:
    """The region name of a band, e.g. ``band_region("ring", 5.0) == "ring_5mm"``."""
    return f"{kind}_{width_mm:g}mm"


def is_phase_image(token: str) -> bool:
    """Whether ``token`` names a phase (``S0``, ``S1``, ...) or a phase role (``SM``, ``SL``)."""
    return token in ("SM", "SL") or bool(_PHASE.match(token))


def is_image(token: str) -> bool:
    """Whether ``token`` is an image pyradiomics features can be computed on (phase, role or derived)."""
    return is_phase_image(token) or token in DERIVED_IMAGES or bool(_SUB.match(token))


def _stats_ok(feature: str) -> bool:
    if feature in FIXED_STATS:
        return True
    prefix, _, image = feature.partition("_")
    return prefix == "mean" and is_image(image)


def parse_canonical_name(name: str) -> CanonicalName:
    """Parse and check a canonical feature name (results are cached: a plan's names are parsed many times).

    Raises:
        FeatureNameError: the message names the offending token (region, image, feature or the whole name).
    """
    if not isinstance(name, str):
        raise FeatureNameError(str(name), str(name), "a feature name must be a string")
    return _parse(name)


@functools.lru_cache(maxsize=1 << 16)
def _parse(name: str) -> CanonicalName:
    parts = name.split(SEPARATOR)
    if len(parts) != 3 or not all(parts):
        raise FeatureNameError(name, name, "expected <region>/<image>/<feature>")
    region, image, feature = parts
    if not is_region(region):
        raise FeatureNameError(
            name, region, "unknown region (tumour, habitat_K, ring_<w>mm, stroma_<w>mm, breast, parenchyma)"
        )
    if image == "msi":
        if region != "tumour":
            raise FeatureNameError(name, region, "MSI features exist for the tumour region only")
        match = _MSI.match(feature)
        if not match or (match.group(1) is not None and not int(match.group(1)) <= int(match.group(2)) >= 1):
            raise FeatureNameError(name, feature, "unknown MSI feature")
        return CanonicalName(name, region, image, feature, "msi", None)
    if image == "stats":
        if not _stats_ok(feature):
            raise FeatureNameError(name, feature, "unknown statistic (volume_ml, voxel_count, fraction, mean_<image>)")
        if feature == "fraction" and _HABITAT.match(region) is None:
            raise FeatureNameError(name, region, "the statistic 'fraction' exists for habitat regions only")
        return CanonicalName(name, region, image, feature, "stats", None)
    if image.startswith("kinetic-"):
        if image.removeprefix("kinetic-") not in KINETIC_STATS:
            raise FeatureNameError(name, image, f"unknown kinetic statistic (kinetic-{{{', '.join(KINETIC_STATS)}}})")
        radiomics = _radiomics(name, feature)
        if radiomics.feature_class in SHAPE_CLASSES:
            raise FeatureNameError(name, feature, "shape features do not vary over phases: no kinetic statistic")
        return CanonicalName(name, region, image, feature, "kinetic", radiomics)
    if not is_image(image):
        raise FeatureNameError(
            name,
            image,
            "unknown image (S<k>, SM, SL, SM0, SL0, M1, M2, PE, SER, WIS, WOS, S_I, S_L, SUB<k>, msi, stats, "
            "kinetic-<stat>)",
        )
    return CanonicalName(name, region, image, feature, "radiomics", _radiomics(name, feature))


def _radiomics(name: str, feature: str) -> FeatureName:
    try:
        return parse_feature_name(feature)
    except ValueError as exc:
        raise FeatureNameError(name, feature, f"not a pyradiomics feature name: {exc}") from None


def canonical_name(region: str, image: str, feature: str) -> str:
    """Join and check the three parts; returns the canonical name.

    Raises:
        FeatureNameError: as :func:`parse_canonical_name`.
    """
    return parse_canonical_name(SEPARATOR.join((region, image, feature))).full


def msi_feature_names(k: int) -> list[str]:
    """The MSI feature names for ``k`` habitats, in the order :func:`oncohabitat.regions.msi.msi_features` uses
    (22 for K = 3)."""
    diagonal = [(i, i) for i in range(1, k + 1)]
    off_diagonal = [(col, row) for col in range(k + 1) for row in range(col + 1, k + 1)]
    cells = diagonal + off_diagonal
    return list(MSI_GLCM_NAMES) + [f"msi_count_{i}_{j}" for i, j in cells] + [f"msi_norm_{i}_{j}" for i, j in cells]

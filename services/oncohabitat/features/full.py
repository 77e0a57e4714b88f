"""Full-extraction mode (research, training): every feature of a profile as one tidy row per study.

:func:`full_plan` names every feature of regions x images x filters x classes under given pyradiomics settings
(the classes listed in ``featureClass``, or all but ``shape2D``; every non-deprecated feature of a class unless
listed; shape once per region, on the original image, named on the first image). The filtered-image names of each
enabled image type are those pyradiomics' own generators yield for these settings (probed on a small synthetic
image). :func:`full_row` runs that plan through the same engine as serving (:func:`~oncohabitat.features.
engine.extract_plan`) and returns one row: canonical name -> value, NaN where a value is missing (the reasons
are in the returned extraction).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk

from oncohabitat.bundles.feature_settings import FeatureSettings
from oncohabitat.bundles.plan import ExtractionPlan, NoNormalisation, Normalisation
from oncohabitat.features.engine import PlanExtraction, Runner, extract_plan
from oncohabitat.features.study import StudyInputs

#: Edge (voxels, 1 mm spacing) of the synthetic image the filter names are probed on.
_PROBE_EDGE = 32


def class_features(feature_class: str) -> list[str]:
    """Non-deprecated features of a pyradiomics class."""
    from radiomics import getFeatureClasses

    names = getFeatureClasses()[feature_class].getFeatureNames()
    return [name for name, deprecated in names.items() if not deprecated]


def filtered_image_names(settings: FeatureSettings) -> list[str]:
    """pyradiomics' names of the filtered images these settings produce (``original``, ``wavelet-LLH``, ...)."""
    from radiomics import imageoperations

    params = settings.to_pyradiomics()
    probe = sitk.GetImageFromArray(np.random.default_rng(0).normal(100, 10, (_PROBE_EDGE,) * 3))
    mask = sitk.GetImageFromArray(np.ones((_PROBE_EDGE,) * 3, dtype=np.uint32))
    names: list[str] = []
    for image_type, custom in (params.get("imageType") or {"Original": {}}).items():
        args = {**params.get("setting", {}), **(custom or {})}
        generator = getattr(imageoperations, f"get{image_type}Image")
        names += [name for _, name, _ in generator(probe, mask, **args)]
    return names


def full_plan(
    settings: FeatureSettings,
    regions: Sequence[str],
    images: Sequence[str],
    region_profile: dict[str, Any] | None = None,
    normalisation: Normalisation | None = None,
) -> ExtractionPlan:
    """The plan naming every feature of ``regions`` x ``images`` x the settings' filters and classes."""
    listed = settings.feature_class
    classes = list(listed) if listed else ["shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm"]
    per_class = {cls: (listed.get(cls) or class_features(cls)) if listed else class_features(cls) for cls in classes}
    filtered = filtered_image_names(settings)
    names: list[str] = []
    for region in regions:
        for number, image in enumerate(images):
            for image_name in filtered:
                for cls in classes:
                    if cls.startswith("shape") and (image_name != "original" or number > 0):
                        continue
                    names += [f"{region}/{image}/{image_name}_{cls}_{feature}" for feature in per_class[cls]]
    return ExtractionPlan(
        region_profile=region_profile or {},
        normalisation=normalisation or NoNormalisation(),
        feature_settings=settings,
        features=names,
    )


def full_row(
    plan: ExtractionPlan, inputs: StudyInputs, runner: Runner | None = None
) -> tuple[dict[str, float], PlanExtraction]:
    """One tidy row (plan order; NaN where missing) and the extraction it came from."""
    extraction = extract_plan(plan, inputs, runner)
    row = {name: extraction.values.get(name, math.nan) for name in plan.features}
    return row, extraction

"""Radiomic feature extraction with pyradiomics, restricted to the features a model needs.

The settings are a pyradiomics parameter dict (a bundle's ``feature_settings``: ``setting``, ``imageType``,
``featureClass``). From the requested fully-qualified names this module derives which image types, feature
classes and features to enable, so pyradiomics computes only what is asked, and refuses names the settings
cannot produce. Values are pyradiomics' own; nothing is re-implemented here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pykwalify.errors
import SimpleITK as sitk
from pydantic import ValidationError
from radiomics import featureextractor, getFeatureClasses

from oncohabitat.bundles.feature_settings import FeatureSettings
from oncohabitat.bundles.names import SHAPE_CLASSES, FeatureName, parse_feature_name
from oncohabitat.features import errors
from oncohabitat.features.errors import FeatureExtractionError
from oncohabitat.features.provenance import component_versions, image_sha256

logger = logging.getLogger(__name__)

_RADIOMICS_LOGGER = "radiomics"
_INTEGER_PIXEL_TYPES = frozenset(
    {sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16, sitk.sitkUInt32, sitk.sitkInt32}
)


@dataclass(frozen=True)
class FeatureProvenance:
    """What determined the values of a :class:`FeatureExtraction`.

    Attributes:
        components: library name -> version (``pyradiomics``, ``SimpleITK``, ``numpy``, ``oncohabitat``).
        settings_sha256: :meth:`FeatureSettings.sha256` of the settings (canonical JSON, pyradiomics layout).
        image_sha256, mask_sha256: :func:`~oncohabitat.features.provenance.image_sha256` of the inputs.
        label: the mask label the features were computed on.
    """

    components: Mapping[str, str]
    settings_sha256: str
    image_sha256: str
    mask_sha256: str
    label: int


@dataclass(frozen=True)
class FeatureExtraction:
    """Requested feature values (in request order) and their provenance."""

    values: Mapping[str, float]
    provenance: FeatureProvenance = field(repr=False)


def _parse_settings(settings: Mapping[str, Any]) -> FeatureSettings:
    if not isinstance(settings, Mapping):
        raise FeatureExtractionError(errors.SETTINGS_INVALID, None, "feature settings must be a JSON object")
    try:
        return FeatureSettings.model_validate(dict(settings))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '<settings>'}: {error['msg']}"
            for error in exc.errors()[:5]
        )
        raise FeatureExtractionError(errors.SETTINGS_INVALID, None, f"invalid feature settings: {problems}") from exc


def _parse_names(feature_names: Sequence[str], settings: FeatureSettings) -> list[FeatureName]:
    """Parse, de-duplicate (keeping order) and check requested names against pyradiomics and the settings."""
    if isinstance(feature_names, str) or not feature_names:
        raise FeatureExtractionError(errors.FEATURE_NAME_INVALID, None, "at least one feature name is required")
    classes = getFeatureClasses()
    parsed: list[FeatureName] = []
    for name in dict.fromkeys(feature_names):
        try:
            feature_name = parse_feature_name(name)
        except ValueError as exc:
            raise FeatureExtractionError(errors.FEATURE_NAME_INVALID, name, str(exc)) from exc
        if feature_name.feature not in classes[feature_name.feature_class].getFeatureNames():
            raise FeatureExtractionError(
                errors.FEATURE_NAME_INVALID,
                name,
                f"pyradiomics class {feature_name.feature_class!r} has no feature {feature_name.feature!r}",
            )
        if not settings.produces(feature_name):
            raise FeatureExtractionError(
                errors.FEATURE_NOT_PRODUCED,
                name,
                f"feature {name!r} is not produced by these settings (image type or feature class not enabled)",
            )
        parsed.append(feature_name)
    return parsed


def pyradiomics_params(settings: Mapping[str, Any], feature_names: Sequence[str]) -> dict[str, Any]:
    """The pyradiomics parameter dict that :func:`extract_features` runs for these settings and names.

    ``setting`` is kept as given except ``additionalInfo``, forced off (the diagnostics it adds do not
    change feature values; provenance is recorded here instead). ``imageType`` keeps only the image types
    the names need, each with its custom settings; ``featureClass`` lists only the requested features of
    the needed classes, so pyradiomics computes nothing else (except that every enabled class runs on every
    enabled image type).

    Raises:
        FeatureExtractionError: ``SETTINGS_INVALID``, ``FEATURE_NAME_INVALID`` or ``FEATURE_NOT_PRODUCED``.
    """
    parsed = _parse_settings(settings)
    return _restricted_params(parsed, _parse_names(feature_names, parsed))


def _restricted_params(settings: FeatureSettings, names: Sequence[FeatureName]) -> dict[str, Any]:
    params = settings.to_pyradiomics()
    params["setting"]["additionalInfo"] = False
    enabled_types = params["imageType"] or {"Original": {}}
    needed_types = {name.image_type for name in names if name.feature_class not in SHAPE_CLASSES}
    params["imageType"] = {key: value for key, value in enabled_types.items() if key in needed_types}
    feature_classes: dict[str, list[str]] = {}
    for name in names:
        features = feature_classes.setdefault(name.feature_class, [])
        if name.feature not in features:
            features.append(name.feature)
    params["featureClass"] = feature_classes
    return params


def build_extractor(params: Mapping[str, Any]) -> featureextractor.RadiomicsFeatureExtractor:
    """A pyradiomics extractor for a parameter dict, validated by pyradiomics' own schema.

    Sets the ``radiomics`` logger to WARNING (its default INFO floods any handler configured by the
    service) and adds no handler.

    Raises:
        FeatureExtractionError: ``SETTINGS_INVALID`` when pyradiomics rejects the parameters.
    """
    logging.getLogger(_RADIOMICS_LOGGER).setLevel(logging.WARNING)
    try:
        return featureextractor.RadiomicsFeatureExtractor(dict(params))
    except (pykwalify.errors.PyKwalifyException, ValueError, TypeError) as exc:
        message = getattr(exc, "msg", None) or str(exc)
        raise FeatureExtractionError(
            errors.SETTINGS_INVALID, None, f"pyradiomics rejected the settings: {message}"
        ) from exc


def _check_inputs(image: sitk.Image, mask: sitk.Image, label: int, correct_mask: bool) -> None:
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise FeatureExtractionError(errors.IMAGE_INVALID, None, "the image must be a 3D scalar image")
    if mask.GetDimension() != 3 or mask.GetPixelID() not in _INTEGER_PIXEL_TYPES:
        raise FeatureExtractionError(errors.MASK_INVALID, None, "the mask must be a 3D integer label image")
    if not correct_mask and image.GetSize() != mask.GetSize():
        raise FeatureExtractionError(
            errors.GEOMETRY_MISMATCH,
            None,
            f"image size {image.GetSize()} and mask size {mask.GetSize()} (x, y, z voxels) differ",
        )
    if label < 1:
        raise FeatureExtractionError(errors.MASK_INVALID, None, f"label must be a positive integer, got {label}")
    if not np.any(sitk.GetArrayViewFromImage(mask) == label):
        raise FeatureExtractionError(errors.LABEL_EMPTY, None, f"the mask has no voxel with label {label}")


def extract_features(
    image: sitk.Image,
    mask: sitk.Image,
    settings: Mapping[str, Any],
    feature_names: Sequence[str],
    label: int = 1,
) -> FeatureExtraction:
    """Compute the requested pyradiomics features of ``image`` inside ``mask == label``.

    Args:
        image: 3D scalar image (e.g. CT in HU); its spacing (mm) and geometry are used by pyradiomics.
        mask: 3D integer label image on the image's grid.
        settings: pyradiomics parameter dict (``setting`` / ``imageType`` / ``featureClass``), e.g. a bundle's
            ``feature_settings.to_pyradiomics()``. ``setting`` may not contain ``label``.
        feature_names: fully-qualified pyradiomics names (``<image>_<class>_<feature>``); duplicates are
            computed once.
        label: mask value of the region of interest.

    Returns:
        Values for exactly the requested names (in request order, as floats; pyradiomics may return NaN
        for degenerate regions) and the provenance of the run.

    Raises:
        FeatureExtractionError: ``FEATURE_NAME_INVALID`` (malformed or unknown name),
            ``FEATURE_NOT_PRODUCED`` (the settings do not compute a requested name), ``SETTINGS_INVALID``,
            ``IMAGE_INVALID``, ``MASK_INVALID``, ``LABEL_EMPTY``, ``GEOMETRY_MISMATCH`` or
            ``EXTRACTION_FAILED`` (pyradiomics refused the image/mask pair, e.g. a too-small ROI).
    """
    parsed_settings = _parse_settings(settings)
    names = _parse_names(feature_names, parsed_settings)
    params = _restricted_params(parsed_settings, names)
    extractor = build_extractor(params)
    _check_inputs(image, mask, label, bool(params["setting"].get("correctMask", False)))

    try:
        result = extractor.execute(image, mask, label=label)
    except ValueError as exc:
        raise FeatureExtractionError(
            errors.EXTRACTION_FAILED, None, f"pyradiomics could not extract features: {exc}"
        ) from exc

    values: dict[str, float] = {}
    for name in names:
        if name.full not in result:
            raise FeatureExtractionError(
                errors.FEATURE_NOT_PRODUCED,
                name.full,
                f"pyradiomics did not produce {name.full!r} with these settings (check filter parameters)",
            )
        values[name.full] = float(result[name.full])
    logger.debug("features extracted", extra={"n_features": len(values), "label": label})

    provenance = FeatureProvenance(
        components=component_versions(),
        settings_sha256=parsed_settings.sha256(),
        image_sha256=image_sha256(image),
        mask_sha256=image_sha256(mask),
        label=label,
    )
    return FeatureExtraction(values=values, provenance=provenance)

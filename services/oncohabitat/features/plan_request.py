"""ExtractPlan request -> (plan, study inputs): parsing and checks that turn bad input into INVALID_ARGUMENT.

Every refusal names its token: the feature name part (region, image, feature), the setting, the image or the
volume field (``spacing``, ``origin``, ``direction``, ``shape``: checked by :class:`~oncohabitat.common.codec.
VolumeCodec`).
"""

from __future__ import annotations

import json
import math

import numpy as np
from pydantic import ValidationError

from oncohabitat.bundles.canonical import FeatureNameError, is_image
from oncohabitat.bundles.plan import ExtractionPlan
from oncohabitat.common.codec import VolumeCodec
from oncohabitat.common.errors import InvalidInputError
from oncohabitat.common.volume import Volume
from oncohabitat.features import errors, limits
from oncohabitat.features.study import LabelTable, StudyInputs, canonical_regions
from oncohabitat.v1 import features_pb2


def parse_plan(plan_json: str) -> ExtractionPlan:
    """Parse and validate a plan.

    Raises:
        InvalidInputError: ``PLAN_INVALID`` (field = the offending token for a feature-name error).
    """
    try:
        data = json.loads(plan_json)
    except json.JSONDecodeError:
        raise InvalidInputError(errors.PLAN_INVALID, "plan_json is not valid JSON", "plan_json") from None
    if not isinstance(data, dict):
        raise InvalidInputError(errors.PLAN_INVALID, "plan_json must be a JSON object", "plan_json")
    features = data.get("features")
    if isinstance(features, list) and len(features) > limits.MAX_FEATURES:
        raise InvalidInputError(
            errors.PLAN_INVALID, f"a plan may name at most {limits.MAX_FEATURES} features", "features"
        )
    try:
        return ExtractionPlan.model_validate(data)
    except ValidationError as exc:
        offending = "plan_json"
        problems = []
        for error in exc.errors()[:3]:
            cause = (error.get("ctx") or {}).get("error")
            if isinstance(cause, FeatureNameError) and offending == "plan_json":
                offending = cause.token
                problems.append(str(cause))
            else:
                where = ".".join(str(part) for part in error["loc"]) or "<plan>"
                problems.append(f"{where}: {error['msg']}")
        raise InvalidInputError(errors.PLAN_INVALID, "invalid plan: " + "; ".join(problems), offending) from None


def decode_inputs(request: features_pb2.ExtractPlanRequest, codec: VolumeCodec) -> StudyInputs:
    """Images, regions, MSI values and statistics of a request.

    Raises:
        InvalidInputError: unknown or duplicate image name, too many volumes, invalid volumes, non-finite values.
    """
    if len(request.images) > limits.MAX_IMAGES or len(request.regions) > limits.MAX_IMAGES:
        raise InvalidInputError(errors.IMAGE_INVALID, f"at most {limits.MAX_IMAGES} images and label maps", "images")
    images: dict[str, Volume] = {}
    for named in request.images:
        if not is_image(named.name):
            raise InvalidInputError(errors.IMAGE_INVALID, f"unknown image name {named.name!r}", named.name)
        if named.name in images:
            raise InvalidInputError(errors.IMAGE_INVALID, f"image {named.name!r} sent twice", named.name)
        array, geometry = codec.decode_array(named.volume)
        if array.size > limits.MAX_VOXELS:
            raise InvalidInputError(errors.IMAGE_INVALID, f"image {named.name!r} exceeds the voxel limit", named.name)
        images[named.name] = Volume(array, geometry)
    tables = []
    for label_map in request.regions:
        array, geometry = codec.decode_array(label_map.volume)
        if array.dtype.kind not in "iu":
            raise InvalidInputError(errors.MASK_INVALID, "label maps must have an integer dtype", "regions")
        labels = np.asarray(array, dtype=np.int64)
        tables.append(LabelTable(labels, geometry, {int(label.value): label.name for label in label_map.labels}))
    for name, value in [*request.msi_features.items(), *request.statistics.items()]:
        if not math.isfinite(value):
            raise InvalidInputError(errors.IMAGE_INVALID, f"value {name!r} is not finite", name)
    mean = request.parenchyma_mean if request.HasField("parenchyma_mean") else None
    return StudyInputs(
        images=images,
        regions=canonical_regions(tables),
        msi=dict(request.msi_features),
        statistics=dict(request.statistics),
        parenchyma_mean=mean,
    )

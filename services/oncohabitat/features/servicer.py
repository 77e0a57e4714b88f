"""gRPC servicer of the features service (proto <-> domain only)."""

from __future__ import annotations

import json

import grpc

from oncohabitat.common.codec import VolumeCodec
from oncohabitat.common.errors import InvalidInputError
from oncohabitat.common.provenance import make_provenance
from oncohabitat.features.extraction import extract_features
from oncohabitat.v1 import features_pb2, features_pb2_grpc

MAX_FEATURES_PER_CALL = 2000


class FeaturesServicer(features_pb2_grpc.FeaturesServicer):
    """Radiomic features of one image + mask, only the requested ones."""

    def __init__(self, codec: VolumeCodec) -> None:
        self._codec = codec

    def ExtractFeatures(
        self, request: features_pb2.ExtractFeaturesRequest, context: grpc.ServicerContext
    ) -> features_pb2.ExtractFeaturesResponse:
        if not request.feature_names:
            raise InvalidInputError("FEATURES_MISSING", "feature_names must list at least one feature", "feature_names")
        if len(request.feature_names) > MAX_FEATURES_PER_CALL:
            raise InvalidInputError("TOO_MANY_FEATURES", f"at most {MAX_FEATURES_PER_CALL} features", "feature_names")
        try:
            settings = json.loads(request.settings_json or "{}")
        except json.JSONDecodeError:
            raise InvalidInputError("SETTINGS_INVALID", "settings_json is not valid JSON", "settings_json") from None
        if not isinstance(settings, dict):
            raise InvalidInputError("SETTINGS_INVALID", "settings_json must be a JSON object", "settings_json")
        image = self._codec.decode_image(request.image)
        mask = self._codec.decode_image(request.mask.volume)
        extraction = extract_features(image, mask, settings, list(request.feature_names), request.label or 1)
        provenance = extraction.provenance
        components = dict(provenance.components)
        response = features_pb2.ExtractFeaturesResponse(
            values=extraction.values,
            provenance=make_provenance(
                parameter_hashes={"feature_settings": provenance.settings_sha256},
                input_hashes={"image": provenance.image_sha256, "mask": provenance.mask_sha256},
            ),
        )
        for component in response.provenance.components:
            components.pop(component.name, None)
        for name, version in sorted(components.items()):
            response.provenance.components.add(name=name, version=version)
        return response

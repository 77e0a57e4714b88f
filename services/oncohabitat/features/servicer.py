"""gRPC servicer of the features service (proto <-> domain only).

All pyradiomics work runs in the worker processes of a :class:`~oncohabitat.features.pool.PoolRunner`
(pyradiomics is not thread-safe); server threads decode, submit, wait and encode. A call whose deadline passes
or that the client cancels stops waiting at once and its pending work is cancelled.
"""

from __future__ import annotations

import json
import time

import grpc

from oncohabitat.common.codec import VolumeCodec
from oncohabitat.common.errors import InvalidInputError
from oncohabitat.common.provenance import make_provenance, volume_sha256
from oncohabitat.features import limits
from oncohabitat.features.engine import ExtractionCancelledError, InlineRunner, PlanExtraction, extract_plan
from oncohabitat.features.extraction import FeatureExtraction, extract_features
from oncohabitat.features.plan_request import decode_inputs, parse_plan
from oncohabitat.features.pool import PoolRunner, StoppedError
from oncohabitat.features.provenance import component_versions
from oncohabitat.v1 import common_pb2, features_pb2, features_pb2_grpc

MAX_FEATURES_PER_CALL = 2000


def _deadline(context: grpc.ServicerContext) -> float | None:
    remaining = context.time_remaining() if context is not None else None
    return time.time() + remaining if remaining is not None else None


def _stop(context: grpc.ServicerContext) -> None:
    if context.is_active():
        context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the call's deadline passed; the work was stopped")
    context.abort(grpc.StatusCode.CANCELLED, "the call was cancelled; the work was stopped")


def _add_components(provenance: common_pb2.Provenance) -> None:
    components = component_versions()
    for component in provenance.components:
        components.pop(component.name, None)
    for name, version in sorted(components.items()):
        provenance.components.add(name=name, version=version)


class FeaturesServicer(features_pb2_grpc.FeaturesServicer):
    """Radiomic features: of one image + mask (ExtractFeatures), or of a whole plan (ExtractPlan)."""

    def __init__(self, codec: VolumeCodec, runner: PoolRunner | InlineRunner | None = None) -> None:
        self._codec = codec
        self._runner = runner or PoolRunner()

    def warm(self) -> None:
        """Start the worker processes (service start)."""
        if isinstance(self._runner, PoolRunner):
            self._runner.warm()

    def close(self) -> None:
        """Stop the worker processes."""
        if isinstance(self._runner, PoolRunner):
            self._runner.close()

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
        limits.check_settings(settings, image.GetNumberOfPixels(), image.GetSpacing())
        try:
            extraction: FeatureExtraction = self._runner.call(
                extract_features,
                image,
                mask,
                settings,
                list(request.feature_names),
                request.label or 1,
                deadline=_deadline(context),
                cancelled=lambda: not context.is_active(),
            )
        except StoppedError:
            _stop(context)
            raise
        provenance = extraction.provenance
        response = features_pb2.ExtractFeaturesResponse(
            values=extraction.values,
            provenance=make_provenance(
                parameter_hashes={"feature_settings": provenance.settings_sha256},
                input_hashes={"image": provenance.image_sha256, "mask": provenance.mask_sha256},
            ),
        )
        _add_components(response.provenance)
        return response

    def ExtractPlan(
        self, request: features_pb2.ExtractPlanRequest, context: grpc.ServicerContext
    ) -> features_pb2.ExtractPlanResponse:
        plan = parse_plan(request.plan_json)
        inputs = decode_inputs(request, self._codec)
        try:
            result: PlanExtraction = extract_plan(
                plan, inputs, self._runner, deadline=_deadline(context), cancelled=lambda: not context.is_active()
            )
        except ExtractionCancelledError:
            _stop(context)
            raise
        input_hashes = {f"image_{named.name}": volume_sha256(named.volume) for named in request.images}
        for number, label_map in enumerate(request.regions):
            input_hashes[f"regions_{number}"] = volume_sha256(label_map.volume)
        response = features_pb2.ExtractPlanResponse(
            values=result.values,
            warnings=list(result.warnings),
            feature_order=list(plan.features),
            provenance=make_provenance(
                parameter_hashes={"plan": plan.sha256(), "feature_settings": plan.feature_settings.sha256()},
                input_hashes=input_hashes,
            ),
        )
        for name, missing in result.missing.items():
            response.missing.add(name=name, reason=missing.reason, message=missing.message)
        _add_components(response.provenance)
        return response

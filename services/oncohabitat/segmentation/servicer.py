"""gRPC servicer of the segmentation service (proto <-> domain only).

Method order: a supplied mask (request or study) is passed through, resampled to the reference grid
(``supplied-<source>``); else a seed selects seeded fuzzy c-means (``seeded-fcm``); else the profile's ONNX
model runs (``onnx``). Non-OK outcomes are results, not errors: the orchestrator turns them into NEEDS_REVIEW.
"""

from __future__ import annotations

import grpc
import SimpleITK as sitk

from oncohabitat.common.codec import VolumeCodec
from oncohabitat.common.phases import LazyPhases, StudyPhases, check_layout, choose_reference, phase_role
from oncohabitat.common.provenance import make_provenance, sha256_image
from oncohabitat.segmentation.quality import Outcome, mean_enhancement_pct
from oncohabitat.segmentation.segmenter import SegmentationResult, Segmenter
from oncohabitat.segmentation.supplied import measure, same_grid, to_reference_grid
from oncohabitat.v1 import common_pb2, segmentation_pb2, segmentation_pb2_grpc

SUPPLIED_SOURCES = frozenset({"rtstruct", "seg", "request"})
EXTRA_DISTRIBUTIONS = ("onnxruntime", "scipy")
_OUTCOMES: dict[Outcome, segmentation_pb2.SegmentationOutcome] = {
    Outcome.OK: segmentation_pb2.SEGMENTATION_OUTCOME_OK,
    Outcome.NO_LESION: segmentation_pb2.SEGMENTATION_OUTCOME_NO_LESION,
    Outcome.MULTIPLE_LESIONS: segmentation_pb2.SEGMENTATION_OUTCOME_MULTIPLE_LESIONS,
    Outcome.TOUCHES_BORDER: segmentation_pb2.SEGMENTATION_OUTCOME_TOUCHES_BORDER,
    Outcome.IMPLAUSIBLE_VOLUME: segmentation_pb2.SEGMENTATION_OUTCOME_IMPLAUSIBLE_VOLUME,
}


def decode_phases(study: common_pb2.Study, codec: VolumeCodec, requested_reference: int | None) -> StudyPhases:
    """Validate the study's phases and expose them lazily on the reference grid.

    SUBTRACTION series are ignored (never a phase). A SINGLE phase must be the only one.

    Raises:
        InvalidInputError: ``PHASES_INVALID`` (:func:`~oncohabitat.common.phases.check_layout`), or a
            missing reference phase.
    """
    usable = [(phase_role(p), p) for p in study.phases if p.role != common_pb2.PHASE_ROLE_SUBTRACTION]
    check_layout([(role, int(p.index)) for role, p in usable])
    by_index = {int(p.index): p for _, p in usable}
    single = any(role == "single" for role, _ in usable)
    reference = choose_reference(sorted(by_index), single, requested_reference)
    images = LazyPhases(
        sorted(by_index), reference, lambda index: codec.decode_image(by_index[index].volume), same_grid
    )
    pre = 0 if not single and 0 in by_index else None
    return StudyPhases(images=images, reference_index=reference, pre_index=pre)


class SegmentationServicer(segmentation_pb2_grpc.SegmentationServicer):
    """Tumour masks: supplied pass-through, seeded fuzzy c-means or the ONNX model."""

    def __init__(self, codec: VolumeCodec, segmenter: Segmenter) -> None:
        self._codec = codec
        self._segmenter = segmenter

    def Segment(
        self, request: segmentation_pb2.SegmentRequest, context: grpc.ServicerContext
    ) -> segmentation_pb2.SegmentResponse:
        _, profile = self._segmenter.profile(request.profile)
        phases = decode_phases(request.study, self._codec, profile.reference_phase)
        supplied = request.supplied_mask if request.HasField("supplied_mask") else None
        if supplied is None and request.study.HasField("supplied_mask"):
            supplied = request.study.supplied_mask
        if supplied is not None:
            return self._supplied(supplied, phases)
        seed = (request.seed.x, request.seed.y, request.seed.z) if request.has_seed else None
        return self._response(self._segmenter.segment(phases, request.profile, seed), phases)

    def _response(self, result: SegmentationResult, phases: StudyPhases) -> segmentation_pb2.SegmentResponse:
        inputs = {"reference": sha256_image(phases.reference), "mask": sha256_image(result.mask)}
        if phases.pre is not None:
            inputs["pre"] = sha256_image(phases.pre)
        return segmentation_pb2.SegmentResponse(
            outcome=_OUTCOMES[result.outcome],
            reason=result.reason,
            method=result.method,
            mask=common_pb2.LabelMap(
                volume=self._codec.encode_image(result.mask),
                labels=[common_pb2.Label(value=1, name="tumour", description=result.method)],
            ),
            qc=segmentation_pb2.SegmentationQc(
                volume_ml=result.qc.volume_ml,
                component_count=result.qc.component_count,
                mean_enhancement=result.qc.mean_enhancement_pct,
                confidence=result.qc.confidence,
            ),
            provenance=make_provenance(
                parameter_hashes=result.parameter_hashes,
                input_hashes=inputs,
                model_id=result.model_id,
                model_version=result.model_version,
                extra_distributions=EXTRA_DISTRIBUTIONS,
            ),
        )

    def _supplied(self, supplied: common_pb2.LabelMap, phases: StudyPhases) -> segmentation_pb2.SegmentResponse:
        reference = phases.reference
        source = supplied.labels[0].description if supplied.labels else "request"
        source = source if source in SUPPLIED_SOURCES else "request"
        mask, resampled = to_reference_grid(self._codec.decode_image(supplied.volume), reference)
        qc = measure(mask)
        pre = phases.pre
        enhancement = mean_enhancement_pct(
            sitk.GetArrayViewFromImage(mask).astype(bool),
            sitk.GetArrayViewFromImage(reference),
            None if pre is None else sitk.GetArrayViewFromImage(pre),
        )
        response = segmentation_pb2.SegmentResponse(
            method=f"supplied-{source}",
            mask=common_pb2.LabelMap(
                volume=self._codec.encode_image(mask),
                labels=[common_pb2.Label(value=1, name="tumour", description=f"supplied-{source}")],
            ),
            qc=segmentation_pb2.SegmentationQc(
                volume_ml=qc.volume_ml, component_count=qc.component_count, mean_enhancement=enhancement, confidence=1.0
            ),
            provenance=make_provenance(
                parameter_hashes={"resampled": "nearest-neighbour" if resampled else "none"},
                input_hashes={"reference": sha256_image(reference), "mask": sha256_image(mask)},
            ),
        )
        if qc.voxel_count == 0:
            response.outcome = segmentation_pb2.SEGMENTATION_OUTCOME_NO_LESION
            response.reason = "the supplied mask has no voxel on the reference grid"
        else:
            response.outcome = segmentation_pb2.SEGMENTATION_OUTCOME_OK
        return response

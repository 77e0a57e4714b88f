"""gRPC servicer of the segmentation service (proto <-> domain only)."""

from __future__ import annotations

import grpc

from oncohabitat.common.codec import VolumeCodec
from oncohabitat.common.errors import InvalidInputError, PreconditionError
from oncohabitat.common.provenance import make_provenance, sha256_image
from oncohabitat.segmentation.supplied import measure, to_reference_grid
from oncohabitat.v1 import common_pb2, segmentation_pb2, segmentation_pb2_grpc

SUPPLIED_SOURCES = frozenset({"rtstruct", "seg", "request"})


def reference_phase(study: common_pb2.Study) -> common_pb2.Phase:
    """The phase masks are drawn on: the single phase (CT), else the first post-contrast phase."""
    singles = [p for p in study.phases if p.role == common_pb2.PHASE_ROLE_SINGLE]
    if singles:
        return singles[0]
    posts = sorted((p for p in study.phases if p.role == common_pb2.PHASE_ROLE_POST_CONTRAST), key=lambda p: p.index)
    if posts:
        return posts[0]
    raise InvalidInputError("REFERENCE_PHASE_MISSING", "the study has no single or post-contrast phase", "study.phases")


class SegmentationServicer(segmentation_pb2_grpc.SegmentationServicer):
    """Tumour masks. This release passes supplied masks through (resampled to the reference grid);
    the ONNX and seeded fuzzy c-means paths arrive with the segmentation issue and answer
    FAILED_PRECONDITION until then."""

    def __init__(self, codec: VolumeCodec) -> None:
        self._codec = codec

    def Segment(
        self, request: segmentation_pb2.SegmentRequest, context: grpc.ServicerContext
    ) -> segmentation_pb2.SegmentResponse:
        reference = self._codec.decode_image(reference_phase(request.study).volume)
        supplied = request.supplied_mask if request.HasField("supplied_mask") else None
        if supplied is None and request.study.HasField("supplied_mask"):
            supplied = request.study.supplied_mask
        if supplied is None:
            if request.has_seed:
                raise PreconditionError("SEEDED_FCM_UNAVAILABLE", "seeded segmentation is not available yet", "seed")
            raise PreconditionError(
                "AUTOMATIC_SEGMENTATION_UNAVAILABLE", "no mask supplied and no automatic model is deployed", "study"
            )
        source = supplied.labels[0].description if supplied.labels else "request"
        source = source if source in SUPPLIED_SOURCES else "request"
        mask, resampled = to_reference_grid(self._codec.decode_image(supplied.volume), reference)
        qc = measure(mask)
        response = segmentation_pb2.SegmentResponse(
            method=f"supplied-{source}",
            mask=common_pb2.LabelMap(
                volume=self._codec.encode_image(mask),
                labels=[common_pb2.Label(value=1, name="tumour", description=f"supplied-{source}")],
            ),
            qc=segmentation_pb2.SegmentationQc(
                volume_ml=qc.volume_ml, component_count=qc.component_count, confidence=1.0
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

"""gRPC servicer of the regions service (proto <-> domain only)."""

from __future__ import annotations

from pathlib import Path

import grpc

from oncohabitat.common.codec import VolumeCodec
from oncohabitat.common.errors import InvalidInputError
from oncohabitat.common.phases import PhaseInput, phase_role, select_phases
from oncohabitat.common.provenance import make_provenance, volume_sha256
from oncohabitat.common.volume import Geometry
from oncohabitat.regions import errors
from oncohabitat.regions.frozen import FrozenHabitats, load_frozen_habitats
from oncohabitat.regions.grid import map_mask_to_grid
from oncohabitat.regions.pipeline import RegionsResult, build_regions
from oncohabitat.regions.profile import parse_profile
from oncohabitat.v1 import common_pb2, regions_pb2, regions_pb2_grpc

_EXTRA_DISTRIBUTIONS = ("scipy", "scikit-learn", "pydantic")


class RegionsServicer(regions_pb2_grpc.RegionsServicer):
    """Tumour, habitats, peritumoral ring, stroma band and breast mask of one DCE study."""

    def __init__(self, codec: VolumeCodec, models_dir: Path | None = None) -> None:
        self._codec = codec
        self._models_dir = models_dir

    def _phases(self, study: common_pb2.Study) -> list[PhaseInput]:
        phases = []
        for phase in study.phases:
            role = phase_role(phase)
            array, geometry = self._codec.decode_array(phase.volume)
            phases.append(PhaseInput(role, int(phase.index), float(phase.time_offset_s), array, geometry))
        return phases

    def _mask(self, request: regions_pb2.BuildRegionsRequest) -> common_pb2.LabelMap:
        if request.tumour_mask.volume.shape:
            return request.tumour_mask
        if request.study.supplied_mask.volume.shape:
            return request.study.supplied_mask
        raise InvalidInputError(errors.MASK_MISSING, "a tumour mask is required", "tumour_mask")

    def BuildRegions(
        self, request: regions_pb2.BuildRegionsRequest, context: grpc.ServicerContext
    ) -> regions_pb2.BuildRegionsResponse:
        profile = parse_profile(request.profile_json)
        phase_set = select_phases(self._phases(request.study))
        mask_message = self._mask(request)
        mask_array, mask_geometry = self._codec.decode_array(mask_message.volume)
        tumour = map_mask_to_grid(mask_array, mask_geometry, phase_set.shape, phase_set.geometry)
        frozen: FrozenHabitats | None = None
        parameter_hashes = {"region_profile": profile.sha256()}
        reference = profile.habitats.frozen_centroids
        if profile.habitats.enabled and profile.habitats.mode == "frozen" and reference is not None:
            frozen = load_frozen_habitats(self._models_dir, reference)
            parameter_hashes["frozen_centroids"] = reference.sha256
        result = build_regions(phase_set, tumour, profile, frozen)
        input_hashes = {f"phase_{phase.index}": volume_sha256(phase.volume) for phase in request.study.phases}
        input_hashes["tumour_mask"] = volume_sha256(mask_message.volume)
        return self._response(result, parameter_hashes, input_hashes)

    def _response(
        self, result: RegionsResult, parameter_hashes: dict[str, str], input_hashes: dict[str, str]
    ) -> regions_pb2.BuildRegionsResponse:
        geometry: Geometry = result.geometry
        response = regions_pb2.BuildRegionsResponse(
            msi_features=dict(result.msi_features),
            provenance=make_provenance(
                parameter_hashes=parameter_hashes,
                input_hashes=input_hashes,
                extra_distributions=_EXTRA_DISTRIBUTIONS,
            ),
        )
        if result.parenchyma_s0_mean is not None:
            response.parenchyma_s0_mean = result.parenchyma_s0_mean
        for region_map in result.maps:
            response.regions.add(
                volume=self._codec.encode_array(region_map.array, geometry),
                labels=[
                    common_pb2.Label(value=entry.value, name=entry.name, description=entry.description)
                    for entry in region_map.labels
                ],
            )
        for name, array in result.derived_images.items():
            response.derived_images.add(name=name, volume=self._codec.encode_array(array, geometry))
        for stats in result.statistics:
            response.statistics.add(
                region=stats.region,
                voxel_count=stats.voxel_count,
                volume_ml=stats.volume_ml,
                mean_values=dict(stats.mean_values),
            )
        return response

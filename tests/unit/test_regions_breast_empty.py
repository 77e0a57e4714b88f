"""A study whose breast mask finds no tissue: BuildRegions answers INVALID_ARGUMENT (BREAST_MASK_EMPTY), never
an internal error (once ``front.max()`` on an empty array when no body lay in the central columns)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import grpc
import numpy as np
import pytest

from oncohabitat.common.blobstore import BlobStore
from oncohabitat.common.codec import VolumeCodec
from oncohabitat.common.errors import InvalidInputError
from oncohabitat.common.volume import Geometry
from oncohabitat.regions.breast import compute_breast_mask
from oncohabitat.regions.profile import BreastMaskSettings
from oncohabitat.regions.servicer import RegionsServicer
from oncohabitat.v1 import common_pb2, regions_pb2

SHAPE = (6, 24, 48)  # z, y, x; 2 mm voxels
GEOMETRY = Geometry(spacing=(2.0, 2.0, 2.0), origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))


def _split_body() -> np.ndarray:
    """Body in two blocks far left and far right, joined by a bridge in the first slice only: the other slices
    have no body in their central columns (where the old code took the maximum of an empty array)."""
    image = np.random.default_rng(3).normal(5.0, 1.0, SHAPE).astype(np.float32)
    image[:, 4:20, 2:12] += 400.0
    image[:, 4:20, 36:46] += 400.0
    image[0, 4:20, 12:36] += 400.0
    return image


def _air() -> np.ndarray:
    """Nothing but air (a blank reference phase): no body, no breast."""
    return np.zeros(SHAPE, dtype=np.float32)


SETTINGS = BreastMaskSettings(working_spacing_mm=2.0)


def test_slices_without_central_body_have_no_midline_instead_of_failing() -> None:
    breast = compute_breast_mask(_split_body(), (2.0, 2.0, 2.0), GEOMETRY.direction, SETTINGS)
    assert breast.labels.shape == SHAPE


def test_breast_mask_without_tissue_is_an_invalid_argument() -> None:
    with pytest.raises(InvalidInputError) as info:
        compute_breast_mask(_air(), (2.0, 2.0, 2.0), GEOMETRY.direction, SETTINGS)
    assert info.value.reason == "BREAST_MASK_EMPTY"
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_build_regions_refuses_the_study_with_invalid_argument(tmp_path: Path) -> None:
    codec = VolumeCodec(BlobStore(tmp_path / "blobs"))
    image = _air()
    study = common_pb2.Study(study_key="s", modality="MR")
    for index, (scale, role) in enumerate(
        [(1.0, common_pb2.PHASE_ROLE_PRE_CONTRAST), (1.5, common_pb2.PHASE_ROLE_POST_CONTRAST)]
    ):
        study.phases.add(
            role=role,
            index=index,
            time_offset_s=90.0 * index,
            volume=codec.encode_array(image * scale, GEOMETRY),
        )
    tumour = np.zeros(SHAPE, dtype=np.uint8)
    tumour[2:4, 8:12, 5:9] = 1
    request = regions_pb2.BuildRegionsRequest(
        study=study,
        tumour_mask=common_pb2.LabelMap(volume=codec.encode_array(tumour, GEOMETRY)),
        profile_json='{"habitats": {"enabled": false}, "msi": {"enabled": false}, "derived_images": [], '
        '"statistics_images": []}',
    )
    with pytest.raises(InvalidInputError) as info:
        RegionsServicer(codec).BuildRegions(request, cast(Any, None))
    assert info.value.reason == "BREAST_MASK_EMPTY"
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT

"""Build a ``Study`` message from phase images (tools, benchmarks and tests; the orchestrator builds its own).

Phase 0 becomes PRE_CONTRAST, 1..N POST_CONTRAST; a study of one image can be sent as SINGLE instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import SimpleITK as sitk

from oncohabitat.common.codec import VolumeCodec
from oncohabitat.v1 import common_pb2


def build_study(
    phases: Mapping[int, sitk.Image],
    codec: VolumeCodec,
    times_s: Sequence[float] | None = None,
    *,
    single: bool = False,
    modality: str = "MR",
) -> common_pb2.Study:
    """Study with one Phase per image (``times_s[index]`` = seconds after the pre-contrast phase, if given)."""
    study = common_pb2.Study(modality=modality)
    for index in sorted(phases):
        if single:
            role = common_pb2.PHASE_ROLE_SINGLE
        elif index == 0:
            role = common_pb2.PHASE_ROLE_PRE_CONTRAST
        else:
            role = common_pb2.PHASE_ROLE_POST_CONTRAST
        study.phases.add(
            role=role,
            index=index,
            time_offset_s=0.0 if times_s is None else float(times_s[index]),
            volume=codec.encode_image(phases[index]),
        )
    return study

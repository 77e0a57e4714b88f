"""Dice on held-out phantom studies (ispy size; seeds never used in training: the demo model saw 0-39).

Studies go through the real path: phantom DICOM -> SimpleITK -> Study message (VolumeCodec) -> servicer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from oncohabitat.bundles.registry import default_bundle_root
from oncohabitat.common.codec import VolumeCodec
from oncohabitat.common.errors import InvalidInputError, PreconditionError
from oncohabitat.phantom import PhantomStudy, generate_study
from oncohabitat.segmentation.segmenter import Segmenter
from oncohabitat.segmentation.servicer import SegmentationServicer
from oncohabitat.segmentation.study_message import build_study
from oncohabitat.v1 import common_pb2, segmentation_pb2

HELD_OUT_SEEDS = (7001, 7002)
MAX_SEED_JITTER_MM = 3.0


@dataclass(frozen=True)
class HeldOut:
    study: PhantomStudy
    message: common_pb2.Study
    truth: np.ndarray


def _load(study: PhantomStudy, codec: VolumeCodec) -> HeldOut:
    phases = {k: sitk.ReadImage([str(p) for p in files]) for k, files in enumerate(study.phase_files)}
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(study.ground_truth.tumour_mask))) != 0
    return HeldOut(study, build_study(phases, codec, study.phase_times_s), truth)


@pytest.fixture(scope="module")
def codec() -> VolumeCodec:
    return VolumeCodec(None)


@pytest.fixture(scope="module")
def servicer(codec: VolumeCodec) -> SegmentationServicer:
    models = default_bundle_root()
    return SegmentationServicer(codec, Segmenter.load(models, models / "segmentation" / "profiles.json"))


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory, codec: VolumeCodec) -> list[HeldOut]:
    root = tmp_path_factory.mktemp("held-out")
    return [_load(generate_study(root / str(seed), size="ispy", seed=seed), codec) for seed in HELD_OUT_SEEDS]


def _mask(response: segmentation_pb2.SegmentResponse, codec: VolumeCodec) -> np.ndarray:
    return sitk.GetArrayFromImage(codec.decode_image(response.mask.volume)) != 0


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float(np.logical_and(a, b).sum()) / float(a.sum() + b.sum())


def test_onnx_model_on_held_out_studies(
    servicer: SegmentationServicer, held_out: list[HeldOut], codec: VolumeCodec
) -> None:
    for case in held_out:
        response = servicer.Segment(segmentation_pb2.SegmentRequest(study=case.message), None)  # type: ignore[arg-type]
        assert response.outcome == segmentation_pb2.SEGMENTATION_OUTCOME_OK, response.reason
        assert response.method == "onnx"
        assert response.provenance.model_id == "phantom-unet3d"
        dice = _dice(_mask(response, codec), case.truth)
        print(f"onnx seed {case.study.seed}: Dice {dice:.3f}, {response.qc.volume_ml:.2f} mL")
        assert dice >= 0.85
        assert response.qc.component_count == 1
        assert response.qc.volume_ml == pytest.approx(case.study.lesion.volume_ml, rel=0.25)  # type: ignore[union-attr]
        assert response.qc.mean_enhancement > 50.0
        assert 0.5 < response.qc.confidence <= 1.0


def test_seeded_fcm_on_held_out_studies_with_jittered_seeds(
    servicer: SegmentationServicer, held_out: list[HeldOut], codec: VolumeCodec
) -> None:
    rng = np.random.default_rng(11)
    for case in held_out:
        assert case.study.lesion is not None
        for _ in range(2):
            direction = rng.normal(size=3)
            offset = direction / np.linalg.norm(direction) * rng.uniform(0.0, MAX_SEED_JITTER_MM)
            x, y, z = np.asarray(case.study.lesion.centre_lps_mm) + offset
            request = segmentation_pb2.SegmentRequest(
                study=case.message, seed=segmentation_pb2.PointMm(x=x, y=y, z=z), has_seed=True
            )
            response = servicer.Segment(request, None)  # type: ignore[arg-type]
            assert response.outcome == segmentation_pb2.SEGMENTATION_OUTCOME_OK, response.reason
            assert response.method == "seeded-fcm"
            dice = _dice(_mask(response, codec), case.truth)
            print(f"seeded FCM seed {case.study.seed}: Dice {dice:.3f}")
            assert dice >= 0.85


def test_lesion_free_study_is_no_lesion(servicer: SegmentationServicer, tmp_path: Path, codec: VolumeCodec) -> None:
    case = _load(generate_study(tmp_path / "empty", size="ispy", seed=7003, lesion=False), codec)
    response = servicer.Segment(segmentation_pb2.SegmentRequest(study=case.message), None)  # type: ignore[arg-type]
    assert response.outcome == segmentation_pb2.SEGMENTATION_OUTCOME_NO_LESION
    assert "no lesion" in response.reason
    assert not _mask(response, codec).any()


def test_wrong_number_of_phases_names_them(servicer: SegmentationServicer, held_out: list[HeldOut]) -> None:
    only_post = common_pb2.Study(phases=[held_out[0].message.phases[1]])
    with pytest.raises(InvalidInputError) as raised:
        servicer.Segment(segmentation_pb2.SegmentRequest(study=only_post), None)  # type: ignore[arg-type]
    assert raised.value.reason == "PHASES_MISSING" and raised.value.field == "study.phases"
    assert "missing [0]" in raised.value.public_message


def test_profile_without_model_needs_a_mask_or_seed(servicer: SegmentationServicer, held_out: list[HeldOut]) -> None:
    request = segmentation_pb2.SegmentRequest(study=held_out[0].message, profile="seeded-only")
    with pytest.raises(PreconditionError):
        servicer.Segment(request, None)  # type: ignore[arg-type]


def test_supplied_mask_is_passed_through(
    servicer: SegmentationServicer, held_out: list[HeldOut], codec: VolumeCodec
) -> None:
    case = held_out[0]
    truth = sitk.ReadImage(str(case.study.ground_truth.tumour_mask))
    request = segmentation_pb2.SegmentRequest(
        study=case.message,
        supplied_mask=common_pb2.LabelMap(
            volume=codec.encode_image(truth), labels=[common_pb2.Label(value=1, name="tumour", description="seg")]
        ),
        has_seed=True,
    )
    response = servicer.Segment(request, None)  # type: ignore[arg-type]
    assert response.method == "supplied-seg"
    assert response.outcome == segmentation_pb2.SEGMENTATION_OUTCOME_OK
    assert np.array_equal(_mask(response, codec), case.truth)
    assert response.qc.mean_enhancement > 50.0

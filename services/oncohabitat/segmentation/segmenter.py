"""The segmentation service's domain entry point: profile -> method -> checks -> result.

Method choice: a supplied mask is passed through (servicer, :mod:`.supplied`); otherwise a seed selects seeded
spatial fuzzy c-means (``seeded-fcm``); otherwise the profile's ONNX bundle runs (``onnx``). Every automatic
result goes through the checks of :mod:`.quality`; a failed check yields its outcome and reason, never a
substitute mask. At most ``max_concurrent`` segmentations run at once (peak memory per replica).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from oncohabitat.common.errors import PreconditionError
from oncohabitat.common.phases import StudyPhases
from oncohabitat.common.provenance import sha256_json
from oncohabitat.segmentation.automatic import segment_automatic
from oncohabitat.segmentation.method_output import MethodOutput
from oncohabitat.segmentation.model_bundle import load_segmentation_bundle
from oncohabitat.segmentation.onnx_model import OnnxSegmentationModel
from oncohabitat.segmentation.profiles import Profile, ProfileSet, load_profiles
from oncohabitat.segmentation.quality import Outcome, Qc, check_mask, component_sizes, mean_enhancement_pct
from oncohabitat.segmentation.seeded import segment_seeded

logger = logging.getLogger(__name__)

METHOD_ONNX = "onnx"
METHOD_SEEDED_FCM = "seeded-fcm"


@dataclass(frozen=True)
class SegmentationResult:
    """Outcome, reason, method, mask (uint8 on the reference grid), QC and what provenance records."""

    outcome: Outcome
    reason: str
    method: str
    mask: sitk.Image
    qc: Qc
    parameter_hashes: dict[str, str] = field(default_factory=dict)
    model_id: str = ""
    model_version: str = ""


class Segmenter:
    """Runs seeded FCM or the ONNX model of a profile on a study's phases."""

    def __init__(
        self,
        profiles: ProfileSet,
        models: Mapping[tuple[str, str], OnnxSegmentationModel],
        max_concurrent: int = 1,
    ) -> None:
        self.profiles = profiles
        self._models = dict(models)
        self._slots = threading.BoundedSemaphore(max_concurrent)

    @classmethod
    def load(
        cls,
        models_dir: Path,
        profiles_file: Path,
        default_profile: str = "",
        intra_op_threads: int = 1,
        max_concurrent: int = 1,
    ) -> Segmenter:
        """Load the profiles and verify every bundle they name (BundleError: the service must not start)."""
        profiles = load_profiles(profiles_file, default_profile)
        models: dict[tuple[str, str], OnnxSegmentationModel] = {}
        for profile in profiles.profiles.values():
            if profile.model is not None and (profile.model.id, profile.model.version) not in models:
                bundle = load_segmentation_bundle(models_dir, profile.model.id, profile.model.version)
                models[(bundle.id, bundle.version)] = OnnxSegmentationModel(bundle, intra_op_threads)
                logger.info(
                    "segmentation bundle loaded",
                    extra={
                        "model_id": bundle.id,
                        "model_version": bundle.version,
                        "demo": bundle.manifest.demonstration_only,
                    },
                )
        return cls(profiles, models, max_concurrent)

    def profile(self, name: str) -> tuple[str, Profile]:
        """(name, profile) for a request's profile field (empty = default); NotFoundError if unknown."""
        return self.profiles.get(name)

    def segment(
        self, phases: StudyPhases, profile_name: str, seed_lps_mm: tuple[float, float, float] | None = None
    ) -> SegmentationResult:
        """Seeded FCM when a seed is given, else the profile's ONNX model.

        Raises:
            PreconditionError: no seed and the profile deploys no model.
            InvalidInputError: the study lacks phases the method needs, or the seed is outside the image.
        """
        name, profile = self.profile(profile_name)
        hashes = {"profile": profile.sha256, "profile_name": sha256_json(name)}
        with self._slots:
            if seed_lps_mm is not None:
                enhancement = _enhancement_image(phases)
                output = segment_seeded(enhancement, seed_lps_mm, profile.fcm)
                hashes["fcm"] = sha256_json(profile.fcm.model_dump(mode="json"))
                return self._finish(phases, profile, output, METHOD_SEEDED_FCM, hashes)
            if profile.model is None:
                raise PreconditionError(
                    "AUTOMATIC_SEGMENTATION_UNAVAILABLE",
                    f"profile {name!r} deploys no automatic model; supply a mask or a seed point",
                    "profile",
                )
            model = self._models[(profile.model.id, profile.model.version)]
            output = segment_automatic(phases.images, phases.reference_index, model)
            hashes["model_manifest"] = model.bundle.manifest_sha256
            return self._finish(
                phases,
                profile,
                output,
                METHOD_ONNX,
                hashes,
                model_id=model.bundle.id,
                model_version=model.bundle.version,
            )

    def _finish(
        self,
        phases: StudyPhases,
        profile: Profile,
        output: MethodOutput,
        method: str,
        hashes: dict[str, str],
        model_id: str = "",
        model_version: str = "",
    ) -> SegmentationResult:
        reference = phases.reference
        spacing = reference.GetSpacing()
        voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0
        verdict = output.verdict or check_mask(
            output.mask,
            voxel_ml,
            profile.qc.min_volume_ml,
            profile.qc.max_volume_ml,
            empty_reason="the segmentation is empty",
        )
        pre = phases.pre
        sizes = component_sizes(output.mask)
        qc = Qc(
            volume_ml=float(np.count_nonzero(output.mask)) * voxel_ml,
            component_count=len(sizes),
            mean_enhancement_pct=mean_enhancement_pct(
                output.mask,
                sitk.GetArrayViewFromImage(reference),
                None if pre is None else sitk.GetArrayViewFromImage(pre),
            ),
            confidence=output.confidence,
        )
        mask = sitk.GetImageFromArray(output.mask.astype(np.uint8))
        mask.CopyInformation(reference)
        hashes["method_details"] = sha256_json(output.details)
        logger.info("segmentation %s: %s (%.2f mL)", method, verdict.outcome, qc.volume_ml)
        return SegmentationResult(
            outcome=verdict.outcome,
            reason=verdict.reason,
            method=method,
            mask=mask,
            qc=qc,
            parameter_hashes=hashes,
            model_id=model_id,
            model_version=model_version,
        )


def _enhancement_image(phases: StudyPhases) -> sitk.Image:
    """Reference minus pre-contrast (float32), or the reference itself for a single-image study."""
    reference = sitk.Cast(phases.reference, sitk.sitkFloat32)
    pre = phases.pre
    if pre is None:
        return reference
    return sitk.Subtract(reference, sitk.Cast(pre, sitk.sitkFloat32))

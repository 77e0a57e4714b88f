"""The export stage: the job's results back to PACS as three DICOM objects in the source study.

1. SEG (series 9001): tumour, habitats 1..K, peritumoral ring, stroma band (the regions stage's label maps,
   placed from the crop grid onto the reference series' grid); single-phase studies (CT) get the tumour only;
2. Comprehensive 3D SR (series 9002, TID 1500): one per job, every model's result and the region volumes
   and habitat fractions, referencing the SEG and the source series (:mod:`oncohabitat.dicomio.sr_export`);
3. Encapsulated PDF (series 9003): the key-image summary (:mod:`oncohabitat.dicomio.key_image`).

UIDs derive from the job id (``generate_uid(entropy_srcs=[job_id, name])``), so a re-export replaces the
objects in PACS instead of duplicating them. Files go to ``exports/<job_id>/`` (older files of the job are
replaced) and are C-STOREd to the job's destination (or the deployment default; none: nothing is built).
Habitats come from the first region profile (by key) that has them; bands from every profile, once per name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

import oncohabitat
from oncohabitat.dicomio import ExportError
from oncohabitat.dicomio.key_image import build_key_image_pdf, habitat_masks, render_key_image, summary_pdf
from oncohabitat.dicomio.scu import SendError, send_instances
from oncohabitat.dicomio.seg_export import RegionSegment, build_region_seg, on_reference_grid, region_kind
from oncohabitat.dicomio.seg_export import region_segment as make_segment
from oncohabitat.dicomio.sr_export import ModelOutcome, RegionVolume, build_job_sr
from oncohabitat.orchestrator.jobs import Job
from oncohabitat.orchestrator.results import SCORE_STAGE, SEGMENT_STAGE
from oncohabitat.orchestrator.retry import TransientStageError
from oncohabitat.orchestrator.runner import StageOutcome, StageResults
from oncohabitat.v1 import common_pb2

if TYPE_CHECKING:
    from oncohabitat.orchestrator.stages import PipelineContext

logger = logging.getLogger(__name__)

LOAD_STAGE = "load_study"
REGIONS_STAGE = "regions"


class ExportFailedError(TransientStageError):
    """PACS did not accept the result objects this time (the job is retried with backoff)."""


def job_uid_factory(job_id: str) -> Callable[[str], str]:
    """UID of a named object of the job (``"seg"``, ``"sr-series"``, ...): same job and name, same UID."""
    return lambda name: str(generate_uid(entropy_srcs=[job_id, name]))


@dataclass(frozen=True)
class ExportObjects:
    """The job's SEG, SR and key-image PDF object, in sending order."""

    seg: Dataset
    sr: Dataset
    pdf: Dataset

    @property
    def datasets(self) -> list[Dataset]:
        """SEG, SR, PDF."""
        return [self.seg, self.sr, self.pdf]


def _region_segments(
    context: PipelineContext, regions: Mapping[str, Any], reference: sitk.Image
) -> tuple[list[RegionSegment], dict[str, dict[str, Any]]]:
    """Habitat and band segments on the reference grid, and the statistics of the profile(s) they came from."""
    segments: dict[str, RegionSegment] = {}
    statistics: dict[str, dict[str, Any]] = {}
    habitat_profile: str | None = None
    for key, stored in sorted(regions.items()):
        for digest in stored.get("label_maps", {}).values():
            label_map = common_pb2.LabelMap.FromString(context.blobs.get(digest))
            kinds = {region_kind(label.name) for label in label_map.labels}
            if not kinds & {"habitat", "ring", "stroma"} or ("habitat" in kinds and habitat_profile not in (None, key)):
                continue
            habitat_profile = key if "habitat" in kinds else habitat_profile
            on_grid = on_reference_grid(context.codec.decode_image(label_map.volume), reference)
            for label in label_map.labels:
                if region_kind(label.name) in ("habitat", "ring", "stroma") and label.name not in segments:
                    segments[label.name] = make_segment(label.name, label.description, on_grid == label.value)
                    statistics[label.name] = stored.get("statistics", {})
    return list(segments.values()), statistics


def _volumes(
    segments: list[RegionSegment], statistics: Mapping[str, Mapping[str, Any]], tumour_ml: float
) -> list[RegionVolume]:
    volumes = [RegionVolume("tumour", tumour_ml)]
    for segment in segments:
        stats = statistics.get(segment.region, {})
        region = stats.get(segment.region)
        if region is None:
            continue
        tumour = stats.get("tumour", {}).get("volume_ml", tumour_ml)
        fraction = region["volume_ml"] / tumour if segment.kind == "habitat" and tumour > 0 else None
        volumes.append(RegionVolume(segment.region, float(region["volume_ml"]), fraction))
    return volumes


def build_export_objects(context: PipelineContext, job: Job, previous: StageResults) -> ExportObjects:
    """SEG, SR and key-image PDF of a job from its stored stage results (nothing is written or sent).

    Raises:
        ExportError: the objects cannot be built (reason code, no patient data).
    """
    loaded = previous[LOAD_STAGE]
    uid = job_uid_factory(job.job_id)
    version = oncohabitat.__version__
    sources = [pydicom.dcmread(context.dicom_store / p, stop_before_pixels=True) for p in loaded["series_paths"]]
    reference = context.codec.decode_image(context.load_volume(loaded["image_volume"]))
    tumour_image = context.codec.decode_image(context.load_volume(previous[SEGMENT_STAGE]["mask_volume"]))
    tumour = on_reference_grid(tumour_image, reference) > 0
    regions = previous.get(REGIONS_STAGE, {}).get("profiles", {}) if loaded.get("phases") else {}
    extra, statistics = _region_segments(context, regions, reference)
    segments = [make_segment("tumour", "tumour mask", tumour), *extra]
    seg = build_region_seg(
        sources,
        segments,
        algorithm_version=version,
        series_instance_uid=uid("seg-series"),
        sop_instance_uid=uid("seg"),
    )
    tumour_ml = float(np.count_nonzero(tumour)) * float(np.prod(reference.GetSpacing())) / 1000.0
    stats_tumour = [s.get("tumour", {}).get("volume_ml") for s in statistics.values()]
    volumes = _volumes(segments[1:], statistics, next((v for v in stats_tumour if v), tumour_ml))
    models = [ModelOutcome.from_result_json(m) for m in previous.get(SCORE_STAGE, {}).get("models", [])]
    sr = build_job_sr(sources, seg, models, volumes, algorithm_version=version, uid=uid)
    image = sitk.GetArrayViewFromImage(reference)  # read only (the key-image slice): no copy of the volume
    names, masks = habitat_masks([s for s in segments if s.mask.any()])
    key_image, slice_index = render_key_image(image, tumour, masks)
    pdf = summary_pdf(key_image, slice_index, image.shape[0], names, models, volumes, version)
    pdf_object = build_key_image_pdf(sources, pdf, uid=uid, referenced=[seg])
    return ExportObjects(seg=seg, sr=sr, pdf=pdf_object)


def write_export_files(objects: ExportObjects, out_dir: Path) -> list[Path]:
    """Write SEG, SR and PDF as ``00-seg.dcm``, ``01-sr.dcm``, ``02-doc.dcm`` in ``out_dir`` (older ones replaced)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.dcm"):
        stale.unlink()
    files = []
    for number, dataset in enumerate(objects.datasets):
        path = out_dir / f"{number:02d}-{str(dataset.Modality).lower()}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def export_stage(context: PipelineContext, job: Job, previous: StageResults) -> StageOutcome:
    """Build the SEG, SR and PDF, write them under ``exports/<job_id>/`` and C-STORE them to PACS."""
    from oncohabitat.orchestrator.audit_events import result_exported
    from oncohabitat.orchestrator.destinations import DestinationNotAllowedError, ExportDestinations

    try:  # only ever a configured destination, whatever the job holds
        allowed = ExportDestinations.from_settings(
            context.default_destination, getattr(context, "export_destinations", "")
        )
        stored_name = str(job.request.get("export_destination") or "")
        destination_text = allowed.address(stored_name)
    except (DestinationNotAllowedError, ValueError):
        return StageOutcome.failed("EXPORT_DESTINATION_NOT_ALLOWED: the job names no configured destination")
    if not destination_text:
        return StageOutcome.ok({"sent": [], "skipped": "no export destination configured"})
    from oncohabitat.orchestrator.stages import Destination  # deferred: stages imports this module

    try:
        objects = build_export_objects(context, job, previous)
    except ExportError as exc:
        return StageOutcome.failed(f"EXPORT_BUILD_FAILED: {exc.reason}")
    files = write_export_files(objects, context.exports_dir / job.job_id)
    destination = Destination.parse(destination_text)
    try:
        report = send_instances(
            files,
            destination.ae_title,
            destination.host,
            destination.port,
            calling_ae=context.calling_ae,
            retries=context.export_retries,
        )
    except SendError as exc:
        result_exported(job.job_id, getattr(job, "study_key", ""), stored_name, destination.ae_title, 0, ok=False)
        raise ExportFailedError("PACS did not accept the result objects") from exc
    result_exported(
        job.job_id, getattr(job, "study_key", ""), stored_name, destination.ae_title, len(report.sent_keys), ok=True
    )
    return StageOutcome.ok({"sent": list(report.sent_keys), "destination_ae": destination.ae_title})

"""One Comprehensive 3D SR (TID 1500) per job: every model's result and the regions' volumes.

Content (one measurement report, imaging measurements = volumetric ROI groups, TID 1411):

- one group per region segment of the job's SEG (tumour, habitats, ring, band), referencing that segment:
  Volume (SCT 118565006, mL) and, for habitats, "Fraction of tumour volume" (``99ONCOHAB``, unit "1");
- one group per model, referencing the tumour segment, algorithm = the model (id, version): the risk score,
  predicted probability and predicted value (where the model has them), each risk-group cut-off, the survival
  probability at each horizon ("Survival probability at <t> <unit>", unit "1"), every feature the model used
  (``99ONCOHAB`` code of the canonical name, unit "1") and its contribution (same concept, derivation
  "Contribution to risk score"); qualitative evaluations: the risk group, and "Demonstration model, not
  for clinical use" where the bundle's intended use says so.

The SEG and the source series are the SR's evidence (Current Requested Procedure Evidence), and every group
references its segment together with the source images it was derived from. One SR per job (not per model):
its UID derives from the job id alone, so a re-export with any set of models replaces the same object.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from oncohabitat.dicomio import coding
from oncohabitat.dicomio.conformance import no_phi_warnings, truncate_overlong_values, with_type2_defaults
from oncohabitat.dicomio.errors import ExportError
from oncohabitat.dicomio.export import DEVICE_OBSERVER_UID, _referenced_segment
from oncohabitat.dicomio.seg_export import region_kind, region_label

logger = logging.getLogger(__name__)

#: Words in a bundle's intended use that mark a demonstration model (case-insensitive).
_DEMONSTRATION_WORDS = ("demonstration", "not for clinical use", "research only")


def is_demonstration(intended_use: str) -> bool:
    """Whether a bundle's intended use says it is a demonstration / research model, not for clinical use."""
    text = intended_use.lower()
    return any(word in text for word in _DEMONSTRATION_WORDS)


@dataclass(frozen=True)
class ModelOutcome:
    """One model's stored result (the score stage's JSON): all numbers unitless except survival times,
    which are in ``time_unit`` (e.g. "months")."""

    model_id: str
    model_version: str
    score: float
    risk_group: str
    cutoffs: tuple[float, ...]
    probability: float | None = None
    predicted_value: float | None = None
    survival: tuple[tuple[float, float], ...] = ()
    time_unit: str = ""
    features: Mapping[str, float] = field(default_factory=dict)
    contributions: Mapping[str, float] = field(default_factory=dict)
    intended_use: str = ""

    @property
    def demonstration(self) -> bool:
        """The bundle is a demonstration model (see :func:`is_demonstration`)."""
        return is_demonstration(self.intended_use)

    @classmethod
    def from_result_json(cls, model: Mapping[str, Any]) -> ModelOutcome:
        """From :func:`oncohabitat.orchestrator.score_stage.model_result_json`'s dict."""
        rule = model.get("risk_rule") or {}
        cutoffs = tuple(float(c) for c in rule.get("cutoffs", [])) or (float(model.get("cutoff", 0.0)),)
        return cls(
            model_id=str(model["model_id"]),
            model_version=str(model["model_version"]),
            score=float(model["score"]),
            risk_group=str(model.get("risk_group", "")),
            cutoffs=cutoffs if model.get("risk_group") else (),
            probability=None if model.get("probability") is None else float(model["probability"]),
            predicted_value=None if model.get("predicted_value") is None else float(model["predicted_value"]),
            survival=tuple((float(t), float(p)) for t, p in model.get("survival", [])),
            time_unit=str(model.get("time_unit", "")),
            features={k: float(v) for k, v in model.get("features", {}).items()},
            contributions={k: float(v) for k, v in model.get("contributions", {}).items()},
            intended_use=str(model.get("intended_use", "")),
        )


@dataclass(frozen=True)
class RegionVolume:
    """A region's volume (mL) and, for habitats, its fraction of the tumour volume (0..1)."""

    region: str
    volume_ml: float
    fraction_of_tumour: float | None = None


def survival_concept(time: float, unit: str) -> hd.sr.CodedConcept:
    """``99ONCOHAB`` concept "Survival probability at <time> <unit>"."""
    return coding.private_concept(f"Survival probability at {time:g} {unit}".strip())


def _number(name: Any, value: float, unit: Any, **kwargs: Any) -> hd.sr.Measurement | None:
    if not math.isfinite(value):
        return None
    return hd.sr.Measurement(name=name, value=float(value), unit=unit, **kwargs)


def _model_measurements(model: ModelOutcome) -> list[hd.sr.Measurement]:
    algorithm = hd.sr.AlgorithmIdentification(name=model.model_id[:64], version=model.model_version[:64])
    items: list[hd.sr.Measurement | None] = [
        _number(coding.RISK_SCORE, model.score, coding.UNITLESS, algorithm_id=algorithm)
    ]
    if model.probability is not None:
        items.append(_number(coding.PROBABILITY, model.probability, coding.UNITLESS, algorithm_id=algorithm))
    if model.predicted_value is not None:
        items.append(_number(coding.PREDICTED_VALUE, model.predicted_value, coding.UNITLESS, algorithm_id=algorithm))
    items += [_number(coding.RISK_CUTOFF, c, coding.UNITLESS, algorithm_id=algorithm) for c in model.cutoffs]
    items += [_number(survival_concept(t, model.time_unit), p, coding.UNITLESS) for t, p in model.survival]
    for values, derivation in ((model.features, None), (model.contributions, coding.CONTRIBUTION)):
        for name, value in values.items():
            items.append(_number(coding.long_name_concept(name), value, coding.UNITLESS, derivation=derivation))
    skipped = sum(item is None for item in items)
    if skipped:
        logger.warning("left %d non-finite value(s) of model %s out of the SR", skipped, model.model_id)
    return [item for item in items if item is not None]


def _model_group(
    model: ModelOutcome, tumour: hd.sr.ReferencedSegment, uid: Callable[[str], str], algorithm_version: str
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    evaluations = []
    if model.risk_group:
        evaluations.append(
            hd.sr.QualitativeEvaluation(name=coding.RISK_GROUP, value=coding.risk_group_concept(model.risk_group))
        )
    if model.demonstration:
        evaluations.append(hd.sr.QualitativeEvaluation(name=coding.INTENDED_USE, value=coding.DEMONSTRATION))
    key = f"{model.model_id}@{model.model_version}"
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid(f"sr-model-{key}"), identifier=f"Tumour: {key}"[:64]),
        referenced_segment=tumour,
        finding_type=coding.TUMOUR_TYPE,
        algorithm_id=hd.sr.AlgorithmIdentification(name=coding.ALGORITHM_NAME, version=algorithm_version),
        measurements=_model_measurements(model),
        qualitative_evaluations=evaluations or None,
    )


def _region_group(
    volume: RegionVolume, segment: hd.sr.ReferencedSegment, uid: Callable[[str], str], algorithm_version: str
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    items = [_number(coding.VOLUME, volume.volume_ml, coding.MILLILITRE)]
    if volume.fraction_of_tumour is not None:
        items.append(_number(coding.TUMOUR_FRACTION, volume.fraction_of_tumour, coding.UNITLESS))
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=uid(f"sr-region-{volume.region}"), identifier=region_label(volume.region)[:64]
        ),
        referenced_segment=segment,
        finding_type=coding.TUMOUR_TYPE if region_kind(volume.region) == "tumour" else coding.TISSUE,
        algorithm_id=hd.sr.AlgorithmIdentification(name=coding.ALGORITHM_NAME, version=algorithm_version),
        measurements=[item for item in items if item is not None],
    )


def segment_numbers(seg_dataset: Dataset) -> dict[str, int]:
    """Segment label -> segment number of a SEG."""
    return {str(item.SegmentLabel): int(item.SegmentNumber) for item in seg_dataset.get("SegmentSequence", [])}


def build_job_sr(
    source_datasets: Sequence[Dataset],
    seg_dataset: Dataset,
    models: Sequence[ModelOutcome],
    volumes: Sequence[RegionVolume],
    *,
    algorithm_version: str,
    uid: Callable[[str], str],
    series_number: int = 9002,
    series_description: str = "OncoHabitat risk report",
) -> hd.sr.Comprehensive3DSR:
    """TID 1500 report of a job (see the module docstring).

    Args:
        source_datasets: the reference series' images (headers suffice); they and the SEG are the evidence.
        seg_dataset: the job's SEG; its "Tumour" segment is referenced by the model groups.
        models: every model's result.
        volumes: region volumes; regions without a segment in the SEG are left out.
        algorithm_version: OncoHabitat version.
        uid: job-derived UID for a name ("sr-series", "sr", tracking identifiers).

    Raises:
        ExportError: ``NO_SOURCE``, ``INVALID_SEG``, ``INVALID_SCORE``, ``INVALID_NAME``, ``SR_BUILD_FAILED``.
    """
    if not source_datasets:
        raise ExportError("NO_SOURCE", "no source images given")
    numbers = segment_numbers(seg_dataset)
    if "Tumour" not in numbers:
        raise ExportError("INVALID_SEG", "the SEG has no Tumour segment")
    if any(not math.isfinite(m.score) for m in models):
        raise ExportError("INVALID_SCORE", "scores must be finite numbers")
    tumour = _referenced_segment(seg_dataset, numbers["Tumour"])
    groups = [
        _region_group(v, _referenced_segment(seg_dataset, numbers[region_label(v.region)]), uid, algorithm_version)
        for v in volumes
        if region_label(v.region) in numbers
    ]
    groups += [_model_group(m, tumour, uid, algorithm_version) for m in models]
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=DEVICE_OBSERVER_UID, name=coding.ALGORITHM_NAME, manufacturer_name=coding.MANUFACTURER
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=coding.PROCEDURE_IMAGING,
        imaging_measurements=groups,
    )
    ordered = list(source_datasets)
    try:
        with no_phi_warnings():
            sr = hd.sr.Comprehensive3DSR(
                evidence=[with_type2_defaults(ordered[0]), *ordered[1:], seg_dataset],
                content=report,
                series_instance_uid=uid("sr-series"),
                series_number=series_number,
                sop_instance_uid=uid("sr"),
                instance_number=1,
                manufacturer=coding.MANUFACTURER,
                is_complete=True,
            )
    except (ValueError, TypeError, AttributeError) as exc:
        raise ExportError("SR_BUILD_FAILED", f"highdicom rejected the report ({type(exc).__name__})") from exc
    sr.SeriesDescription = series_description[:64]
    sr.CodingSchemeIdentificationSequence = [coding.coding_scheme_identification()]
    truncate_overlong_values(sr)
    logger.info("built job SR: %d model(s), %d region group(s)", len(models), len(groups) - len(models))
    return sr

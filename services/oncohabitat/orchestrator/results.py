"""Assembling the public JobResult from persisted stage results.

Stage result layout (JSON, written by :mod:`oncohabitat.orchestrator.stages`):

- ``segment``: ``{"method": str, ...}``
- ``score``: ``{"models": [...]}``, one entry per model as written by
  :func:`oncohabitat.orchestrator.score_stage.model_result_json` (score, probability, predicted value, risk
  group and rule, survival, contributions, out-of-distribution warnings, fallback, provenance)
- ``regions``: ``{"profiles": {key: {"statistics": {region: {"voxel_count", "volume_ml", <image>: mean}},
  "msi_features": {...}, ...}}}`` (see :mod:`oncohabitat.orchestrator.feature_stages`)
- ``export``: ``{"sent": [opaque SOP keys], ...}``

Region summaries take each region from the first profile (by key) that has it; habitat fractions are the
habitat's volume over that profile's tumour volume; MSI values are merged over the profiles the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oncohabitat.v1 import common_pb2, pipeline_pb2, scoring_pb2

SEGMENT_STAGE = "segment"
REGIONS_STAGE = "regions"
SCORE_STAGE = "score"
EXPORT_STAGE = "export"
_COUNTS = ("voxel_count", "volume_ml")


def provenance_from_json(data: Mapping[str, Any]) -> common_pb2.Provenance:
    """The JSON form written by the stages -> Provenance message."""
    return common_pb2.Provenance(
        components=[common_pb2.ComponentVersion(name=k, version=v) for k, v in data.get("components", {}).items()],
        parameter_hashes=data.get("parameter_hashes", {}),
        input_hashes=data.get("input_hashes", {}),
        model_id=data.get("model_id", ""),
        model_version=data.get("model_version", ""),
    )


def provenance_to_json(provenance: common_pb2.Provenance) -> dict[str, Any]:
    """Provenance message -> JSON-serialisable dict (inverse of :func:`provenance_from_json`)."""
    return {
        "components": {c.name: c.version for c in provenance.components},
        "parameter_hashes": dict(provenance.parameter_hashes),
        "input_hashes": dict(provenance.input_hashes),
        "model_id": provenance.model_id,
        "model_version": provenance.model_version,
    }


def job_result_from_stages(results: Mapping[str, Mapping[str, Any]]) -> pipeline_pb2.JobResult:
    """Build the JobResult (without ``job``) from a DONE job's stage results."""
    result = pipeline_pb2.JobResult(
        segmentation_method=str(results.get(SEGMENT_STAGE, {}).get("method", "")),
        exported_sop_instance_keys=list(results.get(EXPORT_STAGE, {}).get("sent", [])),
    )
    for model in results.get(SCORE_STAGE, {}).get("models", []):
        result.models.append(model_result_from_json(model))
    for refused in results.get(SCORE_STAGE, {}).get("not_scored", []):
        result.models_not_scored.append(f"{refused['model_id']}@{refused['model_version']}: {refused['reason']}")
    result.tumour_volume_ml = float(results.get(SEGMENT_STAGE, {}).get("volume_ml", 0.0))
    add_region_summaries(result, results.get(REGIONS_STAGE, {}).get("profiles", {}))
    return result


def add_region_summaries(result: pipeline_pb2.JobResult, profiles: Mapping[str, Mapping[str, Any]]) -> None:
    """Region volumes (mL), habitat fractions, mean kinetic values and MSI values of the stored regions."""
    seen: set[str] = set()
    for _key, stored in sorted(profiles.items()):
        statistics: Mapping[str, Mapping[str, Any]] = stored.get("statistics", {})
        tumour_ml = float(statistics.get("tumour", {}).get("volume_ml", 0.0))
        for region, values in statistics.items():
            if region in seen:
                continue
            seen.add(region)
            summary = result.regions.add(
                region=region,
                voxel_count=int(values.get("voxel_count", 0)),
                volume_ml=float(values.get("volume_ml", 0.0)),
                mean_values={k: float(v) for k, v in values.items() if k not in _COUNTS and v is not None},
            )
            if region.startswith("habitat_") and tumour_ml > 0:
                summary.fraction_of_tumour = summary.volume_ml / tumour_ml
        for name, value in stored.get("msi_features", {}).items():
            if name not in result.msi_features:  # a proto map's [] would insert a default
                result.msi_features[name] = float(value)


def model_result_from_json(model: Mapping[str, Any]) -> pipeline_pb2.ModelResult:
    """One stored model result -> ModelResult (older results without the v2 fields give their defaults)."""
    message = pipeline_pb2.ModelResult(
        model_id=model["model_id"],
        model_version=model["model_version"],
        score=float(model["score"]),
        risk_group=model["risk_group"],
        cutoff=float(model.get("cutoff", 0.0)),
        features={k: float(v) for k, v in model.get("features", {}).items()},
        contributions={k: float(v) for k, v in model.get("contributions", {}).items()},
        provenance=provenance_from_json(model.get("provenance", {})),
        survival=[scoring_pb2.SurvivalPoint(time=t, probability=p) for t, p in model.get("survival", [])],
        time_unit=model.get("time_unit", ""),
        out_of_distribution=[scoring_pb2.OutOfDistribution(**w) for w in model.get("out_of_distribution", [])],
        manifest_sha256=model.get("manifest_sha256", ""),
        intended_use=model.get("intended_use", ""),
        model_type=model.get("model_type", ""),
        fallback_used=bool(model.get("fallback_used", False)),
        missing_covariates=model.get("missing_covariates", []),
    )
    if model.get("probability") is not None:
        message.probability = float(model["probability"])
    if model.get("predicted_value") is not None:
        message.predicted_value = float(model["predicted_value"])
    if model.get("risk_rule"):
        message.risk_rule.CopyFrom(scoring_pb2.RiskGroupRule(**model["risk_rule"]))
    return message

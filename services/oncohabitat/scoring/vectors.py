"""Replay of a scoring bundle's test vectors at load: a bundle whose outputs disagree is refused.

Tolerances (absolute, on values of magnitude <= 1; relative above): 1e-9 for linear models, 1e-6 for ONNX
models (float32 arithmetic inside tree ensembles). Risk groups and ``fallback_used`` must match exactly.
"""

from __future__ import annotations

from pydantic import ValidationError

from oncohabitat.bundles import errors as bundle_errors
from oncohabitat.bundles.errors import BundleError
from oncohabitat.bundles.vectors import VectorCase, VectorFile
from oncohabitat.common.errors import DomainError
from oncohabitat.scoring.model import CompiledBundle, ScoreResult, score

LINEAR_TOLERANCE = 1e-9
ONNX_TOLERANCE = 1e-6


def tolerance_for(model_type: str) -> float:
    """Replay tolerance of a head of ``model_type``."""
    return ONNX_TOLERANCE if model_type == "onnx" else LINEAR_TOLERANCE


def _close(actual: float | None, expected: float, tolerance: float) -> bool:
    return actual is not None and abs(actual - expected) <= tolerance * max(1.0, abs(expected))


def _mismatch(case: VectorCase, result: ScoreResult, tolerance: float) -> str | None:
    """The first output of ``result`` that disagrees with the case, or None."""
    expected = case.expected
    if expected.fallback_used != result.fallback_used:
        return "fallback_used"
    for name in ("score", "probability", "predicted_value"):
        want = getattr(expected, name)
        if want is not None and not _close(getattr(result, name), want, tolerance):
            return name
    if expected.risk_group is not None and expected.risk_group != result.risk_group:
        return "risk_group"
    if expected.survival is not None:
        got = [p for _, p in result.survival]
        if len(got) != len(expected.survival) or not all(
            _close(a, b, tolerance) for a, b in zip(got, expected.survival, strict=True)
        ):
            return "survival"
    return None


def replay_vectors(compiled: CompiledBundle) -> int:
    """Run every test vector of the bundle; returns the number of cases replayed.

    Raises:
        BundleError: ``TEST_VECTOR_FAILED`` naming the first failing case (0-based) and output, or the file
            being unreadable / not following the schema.
    """
    bundle = compiled.bundle
    label = f"bundle {bundle.id} {bundle.version}"
    path = bundle.file_path(bundle.manifest.test_vectors)
    try:
        vectors = VectorFile.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise BundleError(bundle_errors.TEST_VECTOR_FAILED, f"{label}: test vectors do not follow the schema") from exc
    for number, case in enumerate(vectors.cases):
        try:
            result = score(compiled, case.features, case.covariates)
        except DomainError as exc:
            raise BundleError(
                bundle_errors.TEST_VECTOR_FAILED, f"{label}: test vector {number} is refused ({exc.reason})"
            ) from exc
        except (IndexError, ValueError) as exc:
            raise BundleError(
                bundle_errors.TEST_VECTOR_FAILED, f"{label}: test vector {number} cannot be evaluated"
            ) from exc
        model_type = result.model_type
        problem = _mismatch(case, result, tolerance_for(model_type))
        if problem is not None:
            raise BundleError(
                bundle_errors.TEST_VECTOR_FAILED,
                f"{label}: test vector {number} disagrees on {problem} "
                f"(tolerance {tolerance_for(model_type):g} for a {model_type} model)",
            )
    return len(vectors.cases)

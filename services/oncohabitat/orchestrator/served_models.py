"""The scoring models the scoring service serves now, as the orchestrator plans with them (client side).

The scoring service owns the bundles: it verifies them (hashes, lock, signature policy), replays their test
vectors and hot-reloads them. The orchestrator never reads a bundle; it asks the scoring service:

- ``ListModels`` on every :meth:`ServedModels.snapshot` (a loopback call well under a millisecond; ``ttl_s``
  reuses an answer for that long, 0 = every call), so a bundle rejected by the scoring service is never
  planned and one it hot-loads is planned by the next stage that asks;
- ``DescribeModel`` (exact id and version) only for a manifest SHA-256 not seen before: the description of one
  manifest never changes, so it is cached by that hash. It carries the extraction plan as canonical JSON (its
  SHA-256 is checked against ``plan_sha256``), the required inputs (modality, phase roles), the covariate names
  and whether the model has an imaging-only fallback.

A failed call propagates as the ``grpc.RpcError`` it is, so an unreachable scoring service (UNAVAILABLE,
DEADLINE_EXCEEDED) makes the stage a transient failure the runner retries, like any other stage RPC. A model
unloaded between the two calls (``DescribeModel`` answers not found) is left out of that snapshot.

Upgrade the scoring service with or before the orchestrator: an older one sends no ``plan_json``, and its models
are then listed without a plan (the features stage ends such a job NEEDS_REVIEW ``MODEL_INPUTS_UNSUPPORTED``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import grpc

from oncohabitat.bundles import errors as bundle_errors
from oncohabitat.bundles.errors import BundleError
from oncohabitat.bundles.hashing import sha256_bytes
from oncohabitat.bundles.plan import ExtractionPlan
from oncohabitat.bundles.registry import LATEST_ALIASES
from oncohabitat.bundles.semver import SemVer
from oncohabitat.common.errors import error_detail_from
from oncohabitat.v1 import scoring_pb2, scoring_pb2_grpc

#: ``DescribeModel`` answers that mean "no longer loaded" (the model is left out of the snapshot).
_GONE_REASONS = frozenset({bundle_errors.MODEL_NOT_FOUND, bundle_errors.VERSION_NOT_FOUND})


class ServedModelError(Exception):
    """The scoring service described a model inconsistently (plan JSON not matching its hash, invalid plan).

    Permanent (the description of a manifest never changes); the message names the model only.
    """


@dataclass(frozen=True)
class ServedModel:
    """One loaded scoring bundle as the scoring service describes it: what eligibility and planning need."""

    id: str
    version: str
    manifest_sha256: str
    modality: str
    phases: tuple[str, ...]
    covariates: tuple[str, ...]
    has_fallback: bool
    plan: ExtractionPlan | None
    plan_sha256: str = ""

    @property
    def semver(self) -> SemVer:
        """The parsed version (precedence for "latest")."""
        return SemVer.parse(self.version)

    @property
    def name(self) -> str:
        """``id@version``."""
        return f"{self.id}@{self.version}"

    @classmethod
    def from_description(cls, description: scoring_pb2.ModelDescription) -> ServedModel:
        """A DescribeModel answer -> ServedModel (the plan parsed and checked against ``plan_sha256``).

        Raises:
            ServedModelError: the plan JSON does not hash to ``plan_sha256`` or is not a valid plan.
        """
        summary = description.summary
        name = f"{summary.model_id}@{summary.model_version}"
        plan: ExtractionPlan | None = None
        if description.plan_json:
            if description.plan_sha256 and sha256_bytes(description.plan_json.encode()) != description.plan_sha256:
                raise ServedModelError(f"{name}: the plan sent does not match its plan_sha256")
            try:
                plan = ExtractionPlan.model_validate_json(description.plan_json)
            except ValueError as exc:
                raise ServedModelError(f"{name}: the plan sent is not a valid extraction plan") from exc
        required = description.required_inputs
        return cls(
            id=summary.model_id,
            version=summary.model_version,
            manifest_sha256=summary.manifest_sha256,
            modality=required.modality or summary.modality,
            phases=tuple(required.phases),
            covariates=tuple(summary.covariate_names),
            has_fallback=description.has_fallback,
            plan=plan,
            plan_sha256=description.plan_sha256,
        )


class ModelSet:
    """An immutable set of served models, by id then ascending version; also a fixed :class:`ModelCatalogue`."""

    def __init__(self, models: Iterable[ServedModel] = (), rejected: Iterable[str] = ()) -> None:
        self._models = tuple(sorted(models, key=lambda m: (m.id, m.semver)))
        self.rejected: tuple[str, ...] = tuple(rejected)  # kind/id/version the scoring service refused

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)

    def snapshot(self) -> ModelSet:
        """Itself (a fixed catalogue, e.g. in tests)."""
        return self

    def get(self, model_id: str, version: str | None = None) -> ServedModel:
        """``model_id`` at ``version``; None / ``""`` / ``"latest"``: the highest release, else pre-release.

        Raises:
            BundleError: ``MODEL_NOT_FOUND`` or ``VERSION_NOT_FOUND`` (as the bundle registry does).
        """
        candidates = [m for m in self._models if m.id == model_id]
        if not candidates:
            raise BundleError(bundle_errors.MODEL_NOT_FOUND, f"no model {model_id!r} is loaded")
        if version is None or version in LATEST_ALIASES:
            releases = [m for m in candidates if not m.semver.prerelease]
            return max(releases or candidates, key=lambda m: m.semver)
        for model in candidates:
            if model.version == version:
                return model
        available = ", ".join(m.version for m in candidates)
        raise BundleError(
            bundle_errors.VERSION_NOT_FOUND, f"model {model_id!r} has no version {version!r} (available: {available})"
        )


class ModelCatalogue(Protocol):
    """What the stages ask for: the models served now."""

    def snapshot(self) -> ModelSet:
        """The current set of served models."""
        ...


class ServedModels:
    """The scoring service's models, asked over gRPC (see the module docstring); safe to share between threads.

    Args:
        stub: the scoring service.
        timeout_s: deadline of each ListModels / DescribeModel call.
        ttl_s: reuse a listing for this long (0 = ask on every :meth:`snapshot`).
        clock: monotonic seconds (tests).
    """

    def __init__(
        self,
        stub: scoring_pb2_grpc.ScoringStub,
        *,
        timeout_s: float = 30.0,
        ttl_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stub = stub
        self._timeout_s = timeout_s
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._described: dict[str, ServedModel] = {}  # manifest SHA-256 -> model
        self._current: ModelSet | None = None
        self._listed_at = 0.0

    def snapshot(self) -> ModelSet:
        """The models served now (ListModels, then DescribeModel for manifests not seen before).

        Raises:
            grpc.RpcError: the scoring service did not answer (UNAVAILABLE, DEADLINE_EXCEEDED, ...).
            ServedModelError: a description is inconsistent.
        """
        with self._lock:
            now = self._clock()
            if self._current is not None and self._ttl_s > 0 and now - self._listed_at < self._ttl_s:
                return self._current
            listed = self._stub.ListModels(scoring_pb2.ListModelsRequest(), timeout=self._timeout_s)
            models = []
            for summary in listed.models:
                model = self._described.get(summary.manifest_sha256) if summary.manifest_sha256 else None
                if model is None:
                    model = self._describe(summary)
                if model is not None:
                    models.append(model)
            served = {m.manifest_sha256 for m in models}
            for digest in set(self._described) - served:  # unloaded manifests: keep the cache to what is served
                del self._described[digest]
            self._current = ModelSet(models, (r.bundle for r in listed.rejected))
            self._listed_at = now
            return self._current

    def _describe(self, summary: scoring_pb2.ModelSummary) -> ServedModel | None:
        request = scoring_pb2.DescribeModelRequest(model_id=summary.model_id, model_version=summary.model_version)
        try:
            description = self._stub.DescribeModel(request, timeout=self._timeout_s)
        except grpc.RpcError as exc:
            if _unloaded(exc):
                return None
            raise
        model = ServedModel.from_description(description)
        if model.manifest_sha256:
            self._described[model.manifest_sha256] = model
        return model


def _unloaded(exc: grpc.RpcError) -> bool:
    code = exc.code() if isinstance(exc, grpc.Call) else None
    if code == grpc.StatusCode.NOT_FOUND:
        return True
    detail = error_detail_from(exc)
    return code == grpc.StatusCode.FAILED_PRECONDITION and detail is not None and detail.reason in _GONE_REASONS

"""Population habitat centroids fitted on a cohort's training split -> a ``habitats`` bundle, pinned in the lock.

Flow (:func:`fit_cohort_habitats`): the region profile's habitat settings (features, K, scaler, ``n_init``,
``random_state``) -> the cohort file, validated as ``extract`` does -> the patients whose ``split`` is ``train``,
and only those, reduced to their tumour voxels (:mod:`.voxels`, on the extraction's executors: this process,
local processes or Dask) -> :func:`oncohabitat.regions.fit_population_habitats`: voxels pooled in cohort order,
at most ``max_voxels_per_patient`` per patient (a random subset drawn with the seed, so that a few large
tumours do not decide the centroids; every patient with fewer voxels contributes all of them), the scaler and
k-means (scikit-learn, fixed ``n_init`` and seed) fitted on the pool, the centroids renumbered with
:func:`oncohabitat.regions.clustering.perfusion_order` over the pooled points, the very ordering the regions
service applies per patient (habitat 1 = least perfused) -> the centroids file
(:func:`oncohabitat.regions.write_frozen_habitats`) and manifest written with
:func:`oncohabitat.bundles.write_bundle` to ``<root>/habitats/<id>/<version>/`` -> ``<root>/bundles.lock.json``
rewritten with :func:`oncohabitat.bundles.write_lock`.

Nothing time- or machine-dependent enters the bytes: the same training patients, profile and seed give the same
bundle (validation and external patients are never loaded, so they cannot change it). Patient ids never enter
the bundle (counts only). The region profile of a recipe that uses the centroids names the file relative to the
bundle root, :attr:`HabitatFitReport.reference` (``habitats/<id>/<version>/centroids.json`` and its SHA-256).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from oncohabitat.bundles import Bundle, load_bundle, parse_manifest, read_lock, write_bundle, write_lock
from oncohabitat.bundles.errors import BundleError
from oncohabitat.regions import fit_population_habitats, write_frozen_habitats
from oncohabitat.regions.profile import FrozenCentroidsRef, HabitatSettings, RegionProfile
from oncohabitat_training.cohorts import CohortFileError, CohortPatient, read_cohort
from oncohabitat_training.extraction.executors import make_executor
from oncohabitat_training.extraction.run import Failure, OnError
from oncohabitat_training.extraction.segment import SegmentationOptions
from oncohabitat_training.habitats import voxels as voxel_step
from oncohabitat_training.habitats.voxels import FloatArray, VoxelResult, VoxelTask

CENTROIDS_FILE = "centroids.json"
#: Default cap of voxels per patient (the regions library's default): a tumour above it gives a random subset.
DEFAULT_MAX_VOXELS_PER_PATIENT = 20000
TRAINING_SPLIT = "train"


class HabitatFitError(ValueError):
    """The fit cannot run: profile without a fixed K, no training patient, bundle identity or lock problem."""


@dataclass(frozen=True)
class HabitatFitConfig:
    """Where the bundle goes, its identity, the subsampling, and how patients are run.

    ``seed`` None = the profile's ``habitats.random_state`` (k-means and the per-patient subsets);
    ``max_voxels_per_patient`` None = every voxel of every patient.
    """

    out: Path
    bundle_id: str
    version: str
    title: str | None = None
    intended_use: str | None = None
    max_voxels_per_patient: int | None = DEFAULT_MAX_VOXELS_PER_PATIENT
    seed: int | None = None
    on_error: OnError = "continue"
    workers: int = 1
    scheduler: Any | None = None
    segmentation: SegmentationOptions = field(default_factory=SegmentationOptions)
    replace: bool = False

    @property
    def key(self) -> str:
        """The bundle's lock key ``habitats/<id>/<version>``."""
        return f"habitats/{self.bundle_id}/{self.version}"


@dataclass(frozen=True)
class HabitatFitReport:
    """What a run did: the bundle (None when it stopped), its centroids reference, counts and failures."""

    bundle: Bundle[Any] | None
    reference: FrozenCentroidsRef | None
    habitats: dict[str, Any] | None
    n_patients: int
    n_voxels: int
    failures: tuple[Failure, ...]


def habitat_settings(profile: RegionProfile) -> HabitatSettings:
    """The habitat settings to fit, checked: habitats enabled and a fixed K.

    Raises:
        HabitatFitError: habitats disabled or no fixed ``k``.
    """
    settings = profile.habitats
    if not settings.enabled:
        raise HabitatFitError("the region profile has habitats disabled (habitats.enabled = false)")
    if settings.k is None:
        raise HabitatFitError("population centroids need a fixed K: set habitats.k in the region profile")
    return settings


def frozen_section(settings: HabitatSettings, reference: FrozenCentroidsRef, k: int) -> dict[str, Any]:
    """The ``habitats`` section of a region profile using the centroids (the profile's other settings kept)."""
    section = settings.model_dump(mode="json", exclude_defaults=True)
    section.pop("k_range", None)
    section |= {
        "mode": "frozen",
        "features": list(settings.features),
        "k": k,
        "frozen_centroids": reference.model_dump(mode="json"),
    }
    HabitatSettings.model_validate(section)  # a valid habitats section, by construction
    return section


def _code_version() -> str:
    names = ("oncohabitat", "oncohabitat-training", "scikit-learn", "numpy")
    return ", ".join(f"{name} {metadata.version(name)}" for name in names)


def _manifest(
    config: HabitatFitConfig,
    profile: RegionProfile,
    seed: int,
    n_patients: int,
    voxels: Sequence[FloatArray],
    n_excluded: int,
) -> dict[str, Any]:
    """The manifest document (``files`` is filled in by authoring)."""
    settings = profile.habitats
    k = settings.k
    features = list(settings.features)
    fingerprint = hashlib.sha256()
    for matrix in voxels:
        fingerprint.update(np.ascontiguousarray(matrix, dtype="<f8").tobytes())
    cap = config.max_voxels_per_patient
    kinetics = json.dumps(profile.kinetics.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return {
        "format_version": "2",
        "kind": "habitats",
        "id": config.bundle_id,
        "version": config.version,
        "title": config.title or f"Population habitat centroids (K = {k}; {', '.join(features)})",
        "intended_use": config.intended_use
        or (
            "Research: population habitats for region profiles in frozen mode (habitats.mode = frozen), "
            "fitted on the training split of the site's own cohort."
        ),
        "contraindications": [
            "Only with region profiles whose kinetics, intensity normalisation and habitat features are the ones "
            "recorded under readings (the centroids live in that feature space).",
        ],
        "readings": [
            f"Habitat 1 is the least and habitat {k} the most perfused: the centroids are ordered by the regions "
            "service's perfusion order (sum of the features' z-scores over the pooled training voxels).",
            f"Scaler {settings.scaler!r} fitted on the pooled training voxels and frozen in {CENTROIDS_FILE}; new "
            "voxels are scaled with it and take the number of the nearest centroid.",
            f"Kinetic maps as the region profile computes them: kinetics {kinetics}; "
            f"intensity_normalisation {profile.intensity_normalisation!r}.",
            (
                f"At most {cap} voxels per patient (a random subset drawn with seed {seed}), so that large tumours "
                "do not dominate; smaller tumours contribute every voxel."
                if cap is not None
                else "Every tumour voxel of every training patient (no per-patient cap)."
            ),
        ],
        "notes": [
            f"Fitted by oncohabitat-train habitats on the '{TRAINING_SPLIT}' split only: {n_patients} patients "
            f"({n_excluded} excluded after failures), {sum(len(m) for m in voxels)} tumour voxels; "
            "patient ids are not recorded.",
            f"k-means (scikit-learn): K = {k}, n_init = {settings.n_init}, random_state = {seed}.",
            f"Training voxels (float64, cohort order) SHA-256 {fingerprint.hexdigest()}.",
            f"Code: {_code_version()}.",
        ],
        "centroids_file": CENTROIDS_FILE,
        "k": k,
        "parameters": features,
    }


def _check_identity(config: HabitatFitConfig, settings: HabitatSettings) -> None:
    """Refuse a bad id / version / K before any patient runs."""
    probe = {
        "format_version": "2",
        "kind": "habitats",
        "id": config.bundle_id,
        "version": config.version,
        "title": "probe",
        "intended_use": "probe",
        "centroids_file": CENTROIDS_FILE,
        "k": settings.k,
        "parameters": list(settings.features),
        "files": {CENTROIDS_FILE: "0" * 64},
    }
    try:
        parse_manifest(json.dumps(probe))
    except BundleError as exc:
        raise HabitatFitError(f"bundle manifest: {exc.message}") from None
    target = config.out / config.key
    if target.exists() and not config.replace:
        raise HabitatFitError(f"bundle {config.key} already exists under {config.out} (--replace to rewrite it)")


def _check_pins(root: Path, own_key: str) -> None:
    """Every bundle the root's lock already pins must still match its pin (the lock is rewritten afterwards).

    Raises:
        HabitatFitError: a pinned bundle is missing, edited or invalid.
    """
    lock = read_lock(root) if root.is_dir() else None
    for key, digest in sorted((lock or {}).items()):
        if key == own_key:
            continue
        try:
            load_bundle(root / key, digest, kind=key.split("/", 1)[0])
        except BundleError as exc:
            raise HabitatFitError(
                f"{key} no longer matches bundles.lock.json ({exc.reason}); fix or re-lock the root first"
            ) from None


def _training_patients(cohort_path: Path, on_error: OnError) -> tuple[list[CohortPatient], list[Failure]]:
    check = read_cohort(cohort_path)
    if check.fatal or check.cohort is None or (check.problems and on_error == "stop"):
        raise CohortFileError(check.problems)
    failures = [
        Failure(p.row, p.patient_id or "", f"COHORT_INVALID: column {p.column}: {p.message}") for p in check.problems
    ]
    return [p for p in check.cohort.patients if p.split == TRAINING_SPLIT], failures


def _voxels(task: VoxelTask) -> VoxelResult:
    """The per-patient step, looked up at call time (so that tests can watch it)."""
    return voxel_step.patient_voxels(task)


def _collect(
    patients: Sequence[CohortPatient], profile: RegionProfile, config: HabitatFitConfig
) -> tuple[dict[int, FloatArray], list[Failure], bool]:
    tasks = [VoxelTask(i, p, profile.model_dump_json(), config.segmentation) for i, p in enumerate(patients)]
    found: dict[int, FloatArray] = {}
    failures: list[Failure] = []
    executor = make_executor(max(1, min(config.workers, len(tasks))), config.scheduler)
    try:
        for result in executor.run(_voxels, tasks):
            patient = patients[result.position]
            if result.failure is not None or result.voxels is None:
                failures.append(Failure(patient.row, patient.patient_id, result.failure or "NO_VOXELS"))
                if config.on_error == "stop":
                    return found, failures, True
                continue
            found[result.position] = result.voxels
    finally:
        executor.close()
    return found, failures, False


def fit_cohort_habitats(cohort_path: Path, profile: RegionProfile, config: HabitatFitConfig) -> HabitatFitReport:
    """Fit and write the habitats bundle (see the module docstring).

    Raises:
        HabitatFitError: profile without fixed K, bad bundle identity, existing bundle, lock mismatch, no
            training patient.
        CohortFileError: a whole-file cohort problem, or any problem with ``on_error="stop"``.
        BundleError: the written bundle does not verify.
    """
    settings = habitat_settings(profile)
    assert settings.k is not None
    _check_identity(config, settings)
    _check_pins(config.out, config.key)
    patients, failures = _training_patients(cohort_path, config.on_error)
    if not patients:
        raise HabitatFitError(f"the cohort has no patient with split '{TRAINING_SPLIT}'")
    found, failed, stopped = _collect(patients, profile, config)
    failures = sorted([*failures, *failed], key=lambda f: f.row)
    if stopped or not found:
        return HabitatFitReport(None, None, None, len(found), 0, tuple(failures))
    voxels = [found[i] for i in sorted(found)]  # cohort order, whatever order the workers finished in
    seed = settings.random_state if config.seed is None else config.seed
    model = fit_population_habitats(
        voxels,
        settings.features,
        settings.k,
        scaler=settings.scaler,
        n_init=settings.n_init,
        random_state=seed,
        max_voxels_per_patient=config.max_voxels_per_patient,
    )
    with tempfile.TemporaryDirectory(prefix="oncohabitat-habitats-") as scratch:
        digest = write_frozen_habitats(Path(scratch) / CENTROIDS_FILE, model)
        centroids = (Path(scratch) / CENTROIDS_FILE).read_bytes()
    document = _manifest(config, profile, seed, len(voxels), voxels, len(patients) - len(voxels))
    target = config.out / config.key
    if target.exists() and config.replace:
        shutil.rmtree(target)
    bundle = write_bundle(config.out, document, {CENTROIDS_FILE: centroids})
    lock = write_lock(config.out)
    if lock.get(bundle.key) != bundle.manifest_sha256:  # pragma: no cover - write_lock pins what it verified
        raise HabitatFitError(f"{bundle.key} was not pinned in bundles.lock.json")
    reference = FrozenCentroidsRef(file=f"{config.key}/{CENTROIDS_FILE}", sha256=digest)
    return HabitatFitReport(
        bundle=bundle,
        reference=reference,
        habitats=frozen_section(settings, reference, model.k),
        n_patients=len(voxels),
        n_voxels=sum(len(m) for m in voxels),
        failures=tuple(failures),
    )

"""The pydantic schema of a cohort file: declarations (covariates, outcomes) and one model per patient.

A patient has an id, an image source (a DICOM folder, or NIfTI phases with acquisition times in seconds after the
pre-contrast phase), optional tumour masks (a second reader's for ICC), an optional seed point (patient
coordinates LPS, mm), clinical covariates, outcomes and a split. Paths are relative to the cohort file's folder
(the validation context's ``base_dir``); validation checks that they exist and stores them absolute.

Covariates are declared (``numeric`` with optional bounds, or ``categorical`` with its categories); when a
cohort declares none, any covariate is accepted as written (a number or a text). Outcomes are declared the same
way; ``time`` (>= 0, unit as declared), ``event`` (0/1), ``pcr`` (0/1) and ``target`` (continuous) are declared
by default. The per-patient model is built for the declarations (:func:`patient_model`), so pydantic reports
each bad value at its own location (``clinical.<name>``, ``outcomes.<name>``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

Split = Literal["train", "validation", "external"]
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*$"
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CovariateSpec(_Strict):
    """A declared clinical covariate: ``numeric`` (optional bounds, unit) or ``categorical`` (its categories)."""

    type: Literal["numeric", "categorical"]
    categories: list[Annotated[str, BeforeValidator(lambda value: _category_text(value))]] | None = None
    min: FiniteFloat | None = None
    max: FiniteFloat | None = None
    unit: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> CovariateSpec:
        if self.type == "categorical" and not self.categories:
            raise ValueError("a categorical covariate needs its categories")
        if self.type == "numeric" and self.categories is not None:
            raise ValueError("a numeric covariate has no categories")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class OutcomeSpec(_Strict):
    """A declared outcome: ``time`` (>= 0, e.g. months), ``event`` and ``binary`` (0/1), ``continuous``."""

    type: Literal["time", "event", "binary", "continuous"]
    unit: str = ""


DEFAULT_OUTCOMES: dict[str, OutcomeSpec] = {
    "time": OutcomeSpec(type="time"),
    "event": OutcomeSpec(type="event"),
    "pcr": OutcomeSpec(type="binary"),
    "target": OutcomeSpec(type="continuous"),
}


class CohortHeader(_Strict):
    """The declarations of a cohort file (everything but its patients)."""

    version: Literal[1] = 1
    #: None = covariates not declared (accepted as written).
    covariates: dict[Annotated[str, Field(pattern=NAME_PATTERN)], CovariateSpec] | None = None
    outcomes: dict[Annotated[str, Field(pattern=NAME_PATTERN)], OutcomeSpec] = Field(default_factory=dict)

    def outcome_specs(self) -> dict[str, OutcomeSpec]:
        """The default outcomes updated by the declared ones."""
        return {**DEFAULT_OUTCOMES, **self.outcomes}


def _resolve(value: str, info: ValidationInfo, kind: Literal["file", "folder"]) -> str:
    """``value`` made absolute against the context's ``base_dir``; ValueError when it is missing."""
    base = Path((info.context or {}).get("base_dir", "."))
    path = (base / value).resolve()
    if kind == "folder" and not path.is_dir():
        raise ValueError(f"{kind} {value!r} does not exist")
    if kind == "file" and not path.is_file():
        raise ValueError(f"{kind} {value!r} does not exist")
    return str(path)


class ImageSource(_Strict):
    """A DICOM folder, or NIfTI phases (pre-contrast first) with their acquisition times (s after it)."""

    dicom: str | None = None
    nifti: list[str] | None = None
    times_s: list[FiniteFloat] | None = None

    @field_validator("dicom")
    @classmethod
    def _folder(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _resolve(value, info, "folder")

    @field_validator("nifti")
    @classmethod
    def _files(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value is None:
            return None
        return [_resolve(item, info, "file") for item in value]

    @model_validator(mode="after")
    def _one_source(self) -> ImageSource:
        if (self.dicom is None) == (self.nifti is None):
            raise ValueError("give exactly one image source: a DICOM folder or NIfTI phases")
        if self.nifti is not None:
            if len(self.nifti) < 2:
                raise ValueError("NIfTI phases need a pre-contrast and at least one post-contrast phase")
            if self.times_s is None or len(self.times_s) != len(self.nifti):
                raise ValueError("give one acquisition time (s) per NIfTI phase")
            if self.times_s[0] != 0 or any(b <= a for a, b in zip(self.times_s, self.times_s[1:], strict=False)):
                raise ValueError("acquisition times must start at 0 s (pre-contrast) and increase")
        elif self.times_s is not None:
            raise ValueError("acquisition times belong to NIfTI phases, not to a DICOM folder")
        return self


class PatientBase(_Strict):
    """The fields every patient has; :func:`patient_model` adds ``clinical`` and ``outcomes``."""

    patient_id: Annotated[str, Field(min_length=1, max_length=128)]
    image: ImageSource
    mask: str | None = None
    mask_reader2: str | None = None
    seed_mm: tuple[FiniteFloat, FiniteFloat, FiniteFloat] | None = None
    split: Split

    @field_validator("patient_id", mode="before")
    @classmethod
    def _id_text(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value.strip() if isinstance(value, str) else value

    @field_validator("mask", "mask_reader2")
    @classmethod
    def _mask_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _resolve(value, info, "file")

    @model_validator(mode="after")
    def _second_reader(self) -> PatientBase:
        if self.mask_reader2 is not None and self.mask is None:
            raise ValueError("a second reader's mask needs the first reader's mask")
        return self


def _category_text(value: Any) -> Any:
    """Numbers written for categories (``2`` for grade ``"2"``) compare as their text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value) if isinstance(value, int | float) else value


def _covariate_type(spec: CovariateSpec) -> Any:
    if spec.type == "categorical":
        categories = tuple(spec.categories or ())
        return Annotated[Literal[categories] | None, BeforeValidator(_category_text)]
    return Annotated[float, Field(ge=spec.min, le=spec.max, allow_inf_nan=False)] | None


def _outcome_type(spec: OutcomeSpec) -> Any:
    if spec.type == "time":
        return Annotated[float, Field(ge=0.0, allow_inf_nan=False)] | None
    if spec.type in ("event", "binary"):
        return Literal[0, 1] | None
    return FiniteFloat | None


class _Outcomes(_Strict):
    @model_validator(mode="after")
    def _paired(self) -> _Outcomes:
        values = self.model_dump()
        if (values.get("time") is None) != (values.get("event") is None):
            raise ValueError("time and event go together: give both or neither")
        return self


def patient_model(header: CohortHeader) -> type[PatientBase]:
    """The patient model for these declarations (``clinical`` and ``outcomes`` typed per name)."""
    if header.covariates is None:
        clinical: Any = dict[Annotated[str, Field(pattern=NAME_PATTERN)], FiniteFloat | str | None]
    else:
        fields = {name: (_covariate_type(spec), None) for name, spec in header.covariates.items()}
        clinical = create_model("Clinical", __base__=_Strict, **fields)  # type: ignore[call-overload]
    outcome_fields = {name: (_outcome_type(spec), None) for name, spec in header.outcome_specs().items()}
    outcomes = create_model("Outcomes", __base__=_Outcomes, **outcome_fields)  # type: ignore[call-overload]
    return create_model(
        "Patient",
        __base__=PatientBase,
        clinical=(clinical, Field(default_factory=dict, validate_default=True)),
        outcomes=(outcomes, Field(default_factory=dict, validate_default=True)),
    )


def is_missing(value: Any) -> bool:
    """Whether a cell holds no value (None or NaN)."""
    return value is None or (isinstance(value, float) and math.isnan(value))

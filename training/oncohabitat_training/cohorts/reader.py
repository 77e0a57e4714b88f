"""Read and validate a cohort file (CSV or YAML) as a whole; every problem with its row, column and patient id.

**CSV** (one patient per row; paths relative to the CSV file's folder; an empty cell = no value)::

    patient_id,dicom,nifti,nifti_times_s,mask,mask_reader2,seed_x_mm,seed_y_mm,seed_z_mm,clinical.age,time,event,split
    P001,dicom/P001,,,masks/P001.nii.gz,,,,,54,30.5,1,train
    P002,,p2/pre.nii.gz;p2/post1.nii.gz,0;90,,,12.5,-40,80,61,12.0,0,validation

Columns: ``patient_id``, ``split`` (train / validation / external), the image source (``dicom``: a folder, or
``nifti``: phase files separated by ``;`` with ``nifti_times_s``: acquisition times in s after the pre-contrast
phase), ``mask``, ``mask_reader2``, ``seed_x_mm`` / ``seed_y_mm`` / ``seed_z_mm`` (patient coordinates LPS, mm),
``clinical.<name>``, ``outcome.<name>`` and the short outcome columns ``time``, ``event``, ``pcr``, ``target``.
Any other column is refused. A CSV declares nothing: covariates are taken as written.

**YAML** declares covariates and outcomes, then lists the patients (or names a CSV ``table``)::

    version: 1
    covariates:
      age: {type: numeric, min: 18, max: 100, unit: years}
      er: {type: categorical, categories: [positive, negative]}
    outcomes:
      time: {type: time, unit: months}
    patients:
      - patient_id: P001
        image: {dicom: dicom/P001}            # or {nifti: [pre.nii.gz, post1.nii.gz], times_s: [0, 90]}
        mask: masks/P001.nii.gz
        seed_mm: [12.5, -40.0, 80.0]
        clinical: {age: 54, er: positive}
        outcomes: {time: 30.5, event: 1}
        split: train

All rows are validated in one pydantic pass (:mod:`.schema`); :func:`read_cohort` returns the valid patients and
the problems (the extraction may go on without the invalid rows), :func:`load_cohort` refuses any problem.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model

from oncohabitat_training.cohorts.problems import CohortFileError, CohortProblem
from oncohabitat_training.cohorts.schema import CohortHeader, PatientBase, patient_model

Loc = tuple[str | int, ...]
OUTCOME_SHORT_COLUMNS = ("time", "event", "pcr", "target")
PLAIN_COLUMNS = ("patient_id", "split", "dicom", "nifti", "nifti_times_s", "mask", "mask_reader2")
SEED_COLUMNS = ("seed_x_mm", "seed_y_mm", "seed_z_mm")
_HEADER_KEYS = frozenset({"version", "covariates", "outcomes", "patients", "table"})
_INTEGER = re.compile(r"^[+-]?[0-9]+$")


@dataclass(frozen=True)
class CohortPatient:
    """One validated patient (paths absolute; times in s; seed LPS mm)."""

    row: int
    patient_id: str
    split: str
    dicom: Path | None
    nifti: tuple[Path, ...]
    times_s: tuple[float, ...]
    mask: Path | None
    mask_reader2: Path | None
    seed_mm: tuple[float, float, float] | None
    clinical: Mapping[str, float | str | None]
    outcomes: Mapping[str, float | None]

    def input_key(self) -> dict[str, Any]:
        """What the extracted features depend on (image source, masks, seed): the resumption key."""
        return {
            "dicom": str(self.dicom) if self.dicom else None,
            "nifti": [str(path) for path in self.nifti],
            "times_s": list(self.times_s),
            "mask": str(self.mask) if self.mask else None,
            "mask_reader2": str(self.mask_reader2) if self.mask_reader2 else None,
            "seed_mm": list(self.seed_mm) if self.seed_mm else None,
        }


@dataclass(frozen=True)
class Cohort:
    """The valid patients of a cohort file, in file order, and its declarations."""

    path: Path
    sha256: str
    header: CohortHeader
    patients: tuple[CohortPatient, ...]

    def clinical_names(self) -> list[str]:
        """Covariate names: the declared ones in order, else those written, in order of appearance."""
        if self.header.covariates is not None:
            return list(self.header.covariates)
        return list(dict.fromkeys(name for patient in self.patients for name in patient.clinical))

    def outcome_names(self) -> list[str]:
        """Outcomes some patient has a value for, in declaration order."""
        return [
            name
            for name in self.header.outcome_specs()
            if any(patient.outcomes.get(name) is not None for patient in self.patients)
        ]


@dataclass(frozen=True)
class CohortCheck:
    """A read cohort: the valid patients, every problem, and whether a problem concerns the whole file."""

    cohort: Cohort | None
    problems: tuple[CohortProblem, ...]
    fatal: bool = False


@dataclass
class _RawRow:
    row: int
    data: dict[str, Any]
    columns: dict[Loc, str] = field(default_factory=dict)

    def patient_id(self) -> str | None:
        value = self.data.get("patient_id")
        return str(value).strip() or None if isinstance(value, str | int) else None

    def column(self, loc: Loc) -> str:
        for cut in range(len(loc), 0, -1):
            if loc[:cut] in self.columns:
                return self.columns[loc[:cut]]
        return ".".join(str(part) for part in loc)


def _cell(text: str | None) -> Any:
    """A CSV cell: None when empty, an int or float when it reads as one, else the stripped text."""
    value = (text or "").strip()
    if not value:
        return None
    if _INTEGER.match(value):
        return int(value)
    try:
        return float(value)
    except ValueError:
        return value


def _csv_column_problems(header: Sequence[str]) -> list[CohortProblem]:
    problems = []
    seen: set[str] = set()
    for name in header:
        known = (
            name in PLAIN_COLUMNS
            or name in SEED_COLUMNS
            or name in OUTCOME_SHORT_COLUMNS
            or (name.startswith(("clinical.", "outcome.")) and name.partition(".")[2] != "")
        )
        if not known:
            problems.append(CohortProblem(1, name, None, "unknown column"))
        if name in seen:
            problems.append(CohortProblem(1, name, None, "column appears twice"))
        seen.add(name)
    outcomes = [n.removeprefix("outcome.") for n in header if n.startswith("outcome.")]
    for name in set(outcomes) & set(OUTCOME_SHORT_COLUMNS):
        problems.append(CohortProblem(1, f"outcome.{name}", None, f"outcome {name!r} given twice (also as {name})"))
    for required in ("patient_id", "split"):
        if required not in header:
            problems.append(CohortProblem(1, required, None, "required column is missing"))
    return problems


def _csv_row(number: int, cells: Mapping[str, str | None]) -> _RawRow:
    raw = _RawRow(number, {"clinical": {}, "outcomes": {}})
    data = raw.data
    text = {name: (value or "").strip() for name, value in cells.items() if name is not None}
    for name in ("patient_id", "split", "mask", "mask_reader2"):
        if text.get(name):
            data[name] = text[name]
            raw.columns[(name,)] = name
    image: dict[str, Any] = {}
    if text.get("dicom"):
        image["dicom"] = text["dicom"]
    if text.get("nifti"):
        image["nifti"] = [part.strip() for part in text["nifti"].split(";")]
    if text.get("nifti_times_s"):
        image["times_s"] = [_cell(part) for part in text["nifti_times_s"].split(";")]
    if image:
        data["image"] = image
    image_columns: dict[Loc, str] = {
        ("image",): "dicom/nifti",
        ("image", "dicom"): "dicom",
        ("image", "nifti"): "nifti",
        ("image", "times_s"): "nifti_times_s",
    }
    raw.columns.update(image_columns)
    seed = [_cell(text.get(name)) for name in SEED_COLUMNS]
    if any(value is not None for value in seed):
        data["seed_mm"] = seed
    raw.columns.update({("seed_mm", axis): name for axis, name in enumerate(SEED_COLUMNS)})
    raw.columns[("seed_mm",)] = "seed_x_mm"
    raw.columns[("outcomes",)] = "time/event"
    for name, value in text.items():
        target = None
        if name.startswith("clinical."):
            target = ("clinical", name.removeprefix("clinical."))
        elif name.startswith("outcome."):
            target = ("outcomes", name.removeprefix("outcome."))
        elif name in OUTCOME_SHORT_COLUMNS:
            target = ("outcomes", name)
        if target is not None:
            raw.columns[target] = name
            if value:
                data[target[0]][target[1]] = _cell(value)
    return raw


def _read_csv(path: Path) -> tuple[list[_RawRow], list[CohortProblem]]:
    """Raw rows and the header's problems (unknown, repeated or missing columns)."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        reader.fieldnames = header
        problems = _csv_column_problems(header)
        rows = []
        for cells in reader:
            if not any((value or "").strip() for value in cells.values() if isinstance(value, str)):
                continue
            rows.append(_csv_row(reader.line_num, cells))
    return rows, problems


def _yaml_rows(entries: Any) -> tuple[list[_RawRow], list[CohortProblem]]:
    if not isinstance(entries, list):
        return [], [CohortProblem(0, "patients", None, "patients must be a list of patient entries")]
    rows, problems = [], []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            problems.append(CohortProblem(number, "", None, "a patient entry must be a mapping"))
            continue
        data = {"clinical": {}, "outcomes": {}, **entry}
        rows.append(_RawRow(number, data))
    return rows, problems


def _header_problems(exc: ValidationError) -> list[CohortProblem]:
    return [
        CohortProblem(0, ".".join(str(part) for part in error["loc"]), None, _message(error)) for error in exc.errors()
    ]


@dataclass
class _Reading:
    """What a file read gives: declarations, raw rows, the folder paths are relative to, and problems."""

    header: CohortHeader | None
    rows: list[_RawRow]
    base_dir: Path
    sources: list[Path]
    fatal: list[CohortProblem] = field(default_factory=list)
    row_problems: list[CohortProblem] = field(default_factory=list)


def _read_yaml(path: Path) -> _Reading:
    reading = _Reading(None, [], path.parent, [path])
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        reading.fatal.append(CohortProblem(0, "", None, f"not valid YAML{where}"))
        return reading
    if not isinstance(document, dict):
        reading.fatal.append(CohortProblem(0, "", None, "a YAML cohort must be a mapping"))
        return reading
    reading.fatal += [CohortProblem(0, str(key), None, "unknown key") for key in document if key not in _HEADER_KEYS]
    try:
        reading.header = CohortHeader.model_validate(
            {key: value for key, value in document.items() if key in ("version", "covariates", "outcomes")}
        )
    except ValidationError as exc:
        reading.fatal += _header_problems(exc)
    if ("patients" in document) == ("table" in document):
        reading.fatal.append(CohortProblem(0, "patients", None, "give either patients or table"))
    elif "table" in document:
        table = path.parent / str(document["table"])
        if not table.is_file():
            reading.fatal.append(CohortProblem(0, "table", None, f"table file {document['table']!r} does not exist"))
        else:
            reading.rows, header_problems = _read_csv(table)
            reading.fatal += header_problems
            reading.base_dir = table.parent
            reading.sources.append(table)
    else:
        reading.rows, reading.row_problems = _yaml_rows(document["patients"])
    return reading


def _message(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return (
            "unknown column (not declared)" if error["loc"][:1] in (("clinical",), ("outcomes",)) else "unknown column"
        )
    if kind == "missing":
        return "required value is missing"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    value = error.get("input")
    if kind in ("literal_error", "greater_than_equal", "less_than_equal", "float_parsing", "finite_number"):
        return f"{message} (got {value!r})"
    return message


def _location(loc: Sequence[Any]) -> Loc:
    """A pydantic location without its type tags (``function-after[...]``, ``literal[...]``, ``float``)."""
    return tuple(part for part in loc if isinstance(part, int) or ("[" not in part and part not in ("float", "str")))


def _row_problems(exc: ValidationError, rows: Sequence[_RawRow]) -> list[CohortProblem]:
    problems = []
    for error in exc.errors():
        loc = _location(error["loc"])
        if len(loc) < 2 or not isinstance(loc[1], int):
            problems.append(CohortProblem(0, "patients", None, _message(error)))
            continue
        raw = rows[loc[1]]
        problems.append(
            CohortProblem(raw.row, raw.column(loc[2:]), raw.patient_id(), _message({**error, "loc": loc[2:]}))
        )
    return problems


def _patient(row: int, model: PatientBase) -> CohortPatient:
    image = model.image
    clinical = getattr(model, "clinical")  # noqa: B009 - a field of the generated patient model
    outcomes = getattr(model, "outcomes")  # noqa: B009
    return CohortPatient(
        row=row,
        patient_id=model.patient_id,
        split=model.split,
        dicom=Path(image.dicom) if image.dicom else None,
        nifti=tuple(Path(path) for path in image.nifti or ()),
        times_s=tuple(image.times_s or ()),
        mask=Path(model.mask) if model.mask else None,
        mask_reader2=Path(model.mask_reader2) if model.mask_reader2 else None,
        seed_mm=model.seed_mm,
        clinical=dict(clinical if isinstance(clinical, dict) else clinical.model_dump()),
        outcomes=dict(outcomes.model_dump()),
    )


def _validate(
    header: CohortHeader, rows: list[_RawRow], base_dir: Path
) -> tuple[list[CohortPatient], list[CohortProblem]]:
    patient = patient_model(header)
    document: type[BaseModel] = create_model("CohortDocument", patients=(list[patient], Field(min_length=1)))  # type: ignore[valid-type]
    context = {"base_dir": base_dir}
    try:
        validated = document.model_validate({"patients": [row.data for row in rows]}, context=context)
        models = list(getattr(validated, "patients"))  # noqa: B009 - a field of the generated document model
        pairs = list(zip(rows, models, strict=True))
        problems: list[CohortProblem] = []
    except ValidationError as exc:
        problems = (
            _row_problems(exc, rows) if rows else [CohortProblem(0, "patients", None, "the cohort has no patient")]
        )
        bad = {problem.row for problem in problems}
        pairs = [(row, patient.model_validate(row.data, context=context)) for row in rows if row.row not in bad]
    seen: dict[str, int] = {}
    patients = []
    for raw, model in pairs:
        if model.patient_id in seen:
            problems.append(
                CohortProblem(
                    raw.row, raw.column(("patient_id",)), model.patient_id, f"duplicate of row {seen[model.patient_id]}"
                )
            )
            continue
        seen[model.patient_id] = raw.row
        patients.append(_patient(raw.row, model))
    return patients, problems


def _digest(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def read_cohort(path: Path) -> CohortCheck:
    """Read and validate a cohort file; returns the valid patients and every problem (never raises on content).

    Problems of the whole file (unreadable, unknown CSV column, bad declarations) are ``fatal``: no patient is
    returned. Problems of single rows leave the other rows' patients in :attr:`CohortCheck.cohort`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        return CohortCheck(None, (CohortProblem(0, "", None, f"cohort file {path.name!r} does not exist"),), True)
    if suffix == ".csv":
        rows, header_problems = _read_csv(path)
        reading = _Reading(CohortHeader(), rows, path.parent, [path], header_problems)
    elif suffix in (".yaml", ".yml"):
        reading = _read_yaml(path)
    else:
        return CohortCheck(None, (CohortProblem(0, "", None, "a cohort file is .csv, .yaml or .yml"),), True)
    if reading.fatal or reading.header is None:
        return CohortCheck(None, tuple(reading.fatal + reading.row_problems), True)
    patients, problems = _validate(reading.header, reading.rows, reading.base_dir)
    cohort = Cohort(path.resolve(), _digest(reading.sources), reading.header, tuple(patients))
    return CohortCheck(cohort, tuple(reading.row_problems + problems), False)


def load_cohort(path: Path) -> Cohort:
    """Read a cohort file and refuse it when it has any problem.

    Raises:
        CohortFileError: listing every problem (row, column, patient id).
    """
    check = read_cohort(path)
    if check.problems or check.cohort is None:
        raise CohortFileError(check.problems)
    return check.cohort

"""Make patient/study attributes copied from a source image acceptable in a derived object.

Derived objects (SEG, SR) copy the patient and study modules from the source so that a PACS files
them with the study.  Real sources are sometimes sloppy (a Study ID longer than SH allows, an absent
type 2 attribute); highdicom copies them as they are, which would make our object invalid or fail.
The fixes here never log values (they are PHI), only keywords.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.valuerep import DA, DT, TM

logger = logging.getLogger(__name__)

#: Type 2 patient/study attributes that highdicom reads from the first source dataset.
TYPE2_PATIENT_STUDY_KEYWORDS: tuple[str, ...] = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)

#: Maximum value lengths (characters) of the string VRs that can be checked per value.
_MAX_LENGTH = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "DA": 8, "TM": 14, "DT": 26, "AS": 4}


#: Value checks of the VRs whose malformed values make highdicom (or dciodvfy) refuse a derived object.
_AGE = re.compile(r"^\d{3}[DWMY]$")
_SEX = frozenset({"M", "F", "O"})


def with_type2_defaults(ds: Dataset) -> Dataset:
    """Copy of ``ds`` (sharing its data elements) in which missing type 2 patient/study attributes are
    present and empty and malformed values are dropped (:func:`drop_invalid_values`); ``ds`` itself is
    left unchanged."""
    result = Dataset()
    for element in ds:
        result.add(element)
    if "file_meta" in ds.__dict__:
        result.file_meta = ds.file_meta
    drop_invalid_values(result)
    for keyword in TYPE2_PATIENT_STUDY_KEYWORDS:
        if keyword not in result:
            setattr(result, keyword, "")
    return result


def _value_is_valid(element: DataElement) -> bool:
    """Whether every value of a DA / TM / DT / AS element (and Patient's Sex) parses as its VR requires."""
    value = element.value
    if value is None or value == "":
        return True
    values = [str(v) for v in value] if element.VM > 1 else [str(value)]
    parsers = {"DA": DA, "TM": TM, "DT": DT}
    for text in values:
        if text == "":
            continue
        parser = parsers.get(str(element.VR))
        if parser is not None:
            try:
                parser(text)
            except (ValueError, TypeError, OverflowError):
                return False
        elif element.VR == "AS" and not _AGE.match(text):
            return False
        elif element.keyword == "PatientSex" and text not in _SEX:
            return False
    return True


def drop_invalid_values(ds: Dataset) -> list[str]:
    """Remove top-level DA / TM / DT / AS values (and a Patient's Sex) that do not parse (in place).

    A malformed type 2 patient/study value (e.g. Patient's Birth Date ``1970-13-45``) becomes empty, any
    other malformed value is removed: the derived object carries only valid values. Returns the keywords
    fixed; only keywords are logged, never values (they are PHI).
    """
    fixed: list[str] = []
    for element in list(ds):
        if element.VR not in ("DA", "TM", "DT", "AS") and element.keyword != "PatientSex":
            continue
        if _value_is_valid(element):
            continue
        fixed.append(element.keyword)
        if element.keyword in TYPE2_PATIENT_STUDY_KEYWORDS or element.keyword == "PatientSex":
            ds[element.tag] = DataElement(element.tag, element.VR, "")
        else:
            del ds[element.tag]
    if fixed:
        logger.warning("dropped malformed source values of %s", ", ".join(fixed))
    return fixed


def truncate_overlong_values(ds: Dataset) -> list[str]:
    """Truncate top-level string values longer than their VR allows (in place); returns the keywords."""
    fixed: list[str] = []
    for element in ds:
        limit = _MAX_LENGTH.get(str(element.VR))
        if limit is None or element.value is None or element.value == "":
            continue
        if element.VM > 1:
            values = [str(v) for v in element.value]
            if any(len(v) > limit for v in values):
                element.value = [v[:limit] for v in values]
                fixed.append(element.keyword)
        elif len(str(element.value)) > limit:
            element.value = str(element.value)[:limit]
            fixed.append(element.keyword)
    if fixed:
        logger.warning("truncated over-long source values of %s to their VR's maximum length", ", ".join(fixed))
    return fixed


@contextmanager
def no_phi_warnings() -> Iterator[None]:
    """Silence highdicom's person-name warning, whose text quotes the patient's name."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*unlikely to represent the intended person name.*")
        yield

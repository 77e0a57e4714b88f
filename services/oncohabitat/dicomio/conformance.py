"""Make patient/study attributes copied from a source image acceptable in a derived object.

Derived objects (SEG, SR) copy the patient and study modules from the source so that a PACS files
them with the study.  Real sources are sometimes sloppy (a Study ID longer than SH allows, an absent
type 2 attribute); highdicom copies them as they are, which would make our object invalid or fail.
The fixes here never log values (they are PHI), only keywords.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from pydicom.dataset import Dataset

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


def with_type2_defaults(ds: Dataset) -> Dataset:
    """Copy of ``ds`` (sharing its data elements) in which missing type 2 patient/study attributes are
    present and empty; ``ds`` itself is left unchanged."""
    result = Dataset()
    for element in ds:
        result.add(element)
    if "file_meta" in ds.__dict__:
        result.file_meta = ds.file_meta
    for keyword in TYPE2_PATIENT_STUDY_KEYWORDS:
        if keyword not in result:
            setattr(result, keyword, "")
    return result


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

"""Coded concepts used in OncoHabitat's DICOM output.

Standard codes come from pydicom's code dictionary (SNOMED CT, DCM, UCUM).  Concepts that have no
standard code (radiomic feature names, the risk score) use the private coding scheme ``99ONCOHAB``
whose code meanings are the names themselves.
"""

from __future__ import annotations

import hashlib
import re

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from oncohabitat.dicomio.errors import ExportError

SCHEME = "99ONCOHAB"
MANUFACTURER = "OncoHabitat"
ALGORITHM_NAME = "OncoHabitat"
#: DICOM limit of Code Meaning (LO).
_MAX_MEANING = 64

ALGORITHM_FAMILY = codes.cid7162.ArtificialIntelligence
UNITLESS = hd.sr.CodedConcept("1", "UCUM", "no units")
TUMOUR_CATEGORY = codes.SCT.MorphologicallyAbnormalStructure
TUMOUR_TYPE = codes.SCT.Neoplasm
PROCEDURE_IMAGING = codes.SCT.ImagingProcedure

RISK_SCORE = hd.sr.CodedConcept("RISK_SCORE", SCHEME, "Prognostic risk score")
RISK_CUTOFF = hd.sr.CodedConcept("RISK_CUTOFF", SCHEME, "Risk group cut-off")
RISK_GROUP = hd.sr.CodedConcept("RISK_GROUP", SCHEME, "Prognostic risk group")
CONTRIBUTION = hd.sr.CodedConcept("CONTRIBUTION", SCHEME, "Contribution to risk score")
PROBABILITY = hd.sr.CodedConcept("PROBABILITY", SCHEME, "Predicted probability")
PREDICTED_VALUE = hd.sr.CodedConcept("PREDICTED_VALUE", SCHEME, "Predicted value")
TUMOUR_FRACTION = hd.sr.CodedConcept("TUMOUR_FRACTION", SCHEME, "Fraction of tumour volume")
INTENDED_USE = hd.sr.CodedConcept("INTENDED_USE", SCHEME, "Intended use of the model")
DEMONSTRATION = hd.sr.CodedConcept("DEMO_ONLY", SCHEME, "Demonstration model, not for clinical use")
VOLUME = codes.SCT.Volume
MILLILITRE = hd.sr.CodedConcept("mL", "UCUM", "milliliter")
TISSUE = codes.SCT.Tissue


def private_concept(name: str) -> hd.sr.CodedConcept:
    """``99ONCOHAB`` concept for ``name`` (e.g. a pyradiomics feature name).

    The code meaning is the name itself; the code value is a stable 16-character digest of it ("F" +
    15 hex digits of SHA-256), because code values are limited to 16 characters and highdicom 0.28.2
    cannot parse measurement groups holding LongCodeValue concepts back.
    """
    if not name or len(name) > _MAX_MEANING or not name.isprintable() or "\\" in name:
        raise ExportError("INVALID_NAME", f"{name!r} cannot be a code meaning (1-{_MAX_MEANING} printable characters)")
    return hd.sr.CodedConcept(private_code_value(name), SCHEME, name)


def long_name_concept(name: str) -> hd.sr.CodedConcept:
    """Like :func:`private_concept`, but a name over 64 characters keeps its code value (digest of the whole
    name) and shows its first 63 characters and "~" as the meaning (canonical feature names can be long)."""
    if len(name) <= _MAX_MEANING:
        return private_concept(name)
    concept = private_concept(name[: _MAX_MEANING - 1] + "~")
    return hd.sr.CodedConcept(private_code_value(name), SCHEME, concept.meaning)


def private_code_value(name: str) -> str:
    """The ``99ONCOHAB`` code value of ``name`` (see :func:`private_concept`)."""
    return "F" + hashlib.sha256(name.encode("utf-8")).hexdigest()[:15].upper()


def risk_group_concept(risk_group: str) -> hd.sr.CodedConcept:
    """``99ONCOHAB`` code for a risk group label such as "high" (code value "HIGH")."""
    value = re.sub(r"[^A-Z0-9]+", "_", risk_group.strip().upper()).strip("_")[:16]
    if not value:
        raise ExportError("INVALID_RISK_GROUP", "risk group label is empty")
    return hd.sr.CodedConcept(value, SCHEME, risk_group.strip()[:_MAX_MEANING])


def coding_scheme_identification() -> Dataset:
    """CodingSchemeIdentificationSequence item describing ``99ONCOHAB``."""
    item = Dataset()
    item.CodingSchemeDesignator = SCHEME
    item.CodingSchemeName = "OncoHabitat private concepts"
    item.CodingSchemeResponsibleOrganization = MANUFACTURER
    return item

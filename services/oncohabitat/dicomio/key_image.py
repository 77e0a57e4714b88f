"""Key-image summary for viewers without SEG support: an Encapsulated PDF DICOM object.

The page shows the axial slice with the largest tumour area (the reference series, cropped around the tumour,
radiological view: patient right on the left), the habitats as a colour overlay and the tumour outline, a
legend with the habitat volumes and fractions, every model's result (score, probability, predicted value,
risk group and cut-off, survival at the horizons, the largest contributions) and, in red at the top, the
"demonstration model, not for clinical use" warning when a bundle's intended use says so. The page carries
no patient identifiers (Burned In Annotation "NO"); the DICOM object carries the patient and study modules
(valid values only) so that the PACS files it with the study.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from oncohabitat.dicomio import coding
from oncohabitat.dicomio.conformance import truncate_overlong_values, with_type2_defaults
from oncohabitat.dicomio.errors import ExportError
from oncohabitat.dicomio.export import _ordered_sources
from oncohabitat.dicomio.pdf_page import PAGE_HEIGHT, Colour, PdfPage
from oncohabitat.dicomio.seg_export import RegionSegment, region_label
from oncohabitat.dicomio.sr_export import ModelOutcome, RegionVolume

logger = logging.getLogger(__name__)

ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
WARNING_TEXT = "DEMONSTRATION MODEL - NOT FOR CLINICAL USE"
DOCUMENT_TITLE = "OncoHabitat key-image summary"
#: Habitat colours (1 = least perfused: blue ... most perfused: red), cycled beyond six habitats.
HABITAT_COLOURS: tuple[Colour, ...] = (
    (0.20, 0.45, 1.00),
    (1.00, 0.85, 0.10),
    (1.00, 0.20, 0.15),
    (0.70, 0.30, 1.00),
    (0.10, 0.85, 0.85),
    (1.00, 0.55, 0.00),
)
TUMOUR_OUTLINE: Colour = (0.10, 1.00, 0.20)
_OVERLAY_ALPHA = 0.45
_PATIENT_KEYWORDS = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "PatientAge")
_STUDY_KEYWORDS = (
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
)


def _outline(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def render_key_image(
    image: NDArray[np.floating] | NDArray[np.integer],
    tumour: NDArray[np.bool_],
    habitats: Sequence[NDArray[np.bool_]],
    *,
    margin: int = 16,
    target_pixels: int = 384,
) -> tuple[NDArray[np.uint8], int]:
    """(RGB key image, slice index): the slice (z) with the largest tumour area, cropped to the tumour's
    bounding box plus ``margin`` voxels (at least 48 voxels square), windowed to the 1st-99th percentile of
    the crop, habitats blended in :data:`HABITAT_COLOURS`, tumour outline in green, enlarged by an integer
    factor towards ``target_pixels``. Arrays are (z, y, x) on one grid."""
    if not tumour.any():
        raise ExportError("EMPTY_MASK", "the tumour mask is empty")
    k = int(np.argmax(tumour.sum(axis=(1, 2))))
    rows, columns = np.nonzero(tumour[k])
    half = max(24, (max(int(np.ptp(rows)), int(np.ptp(columns))) + 1) // 2 + margin)
    cy, cx = (int(rows.min() + rows.max()) // 2, int(columns.min() + columns.max()) // 2)
    y0, y1 = max(0, cy - half), min(image.shape[1], cy + half)
    x0, x1 = max(0, cx - half), min(image.shape[2], cx + half)
    crop = np.asarray(image[k, y0:y1, x0:x1], dtype=np.float64)
    low, high = np.percentile(crop, [1.0, 99.0])
    grey = np.clip((crop - low) / (high - low if high > low else 1.0), 0.0, 1.0)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    for number, habitat in enumerate(habitats):
        where = habitat[k, y0:y1, x0:x1]
        colour = np.asarray(HABITAT_COLOURS[number % len(HABITAT_COLOURS)])
        rgb[where] = (1 - _OVERLAY_ALPHA) * rgb[where] + _OVERLAY_ALPHA * colour
    rgb[_outline(tumour[k, y0:y1, x0:x1])] = TUMOUR_OUTLINE
    factor = max(1, target_pixels // max(rgb.shape[0], rgb.shape[1]))
    enlarged = np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)
    return np.asarray(np.round(enlarged * 255), dtype=np.uint8), k


def _model_lines(model: ModelOutcome) -> list[str]:
    parts = [f"score {model.score:.4g}"]
    if model.probability is not None:
        parts.append(f"probability {model.probability:.3f}")
    if model.predicted_value is not None:
        parts.append(f"predicted value {model.predicted_value:.4g}")
    if model.risk_group:
        cutoffs = ", ".join(f"{c:.4g}" for c in model.cutoffs)
        parts.append(f"risk group {model.risk_group} (cut-off {cutoffs})")
    lines = [f"{model.model_id} {model.model_version}: " + "; ".join(parts)]
    if model.survival:
        points = ", ".join(f"{t:g} {model.time_unit}: {p:.3f}" for t, p in model.survival)
        lines.append(f"    survival probability at {points}")
    top = sorted(model.contributions.items(), key=lambda item: -abs(item[1]))[:3]
    if top:
        lines.append("    largest contributions: " + ", ".join(f"{name} {value:+.3g}" for name, value in top))
    return lines


def summary_pdf(
    key_image: NDArray[np.uint8],
    slice_index: int,
    slice_count: int,
    habitat_regions: Sequence[str],
    models: Sequence[ModelOutcome],
    volumes: Sequence[RegionVolume],
    algorithm_version: str,
) -> bytes:
    """The one-page summary (see the module docstring) as PDF bytes."""
    page = PdfPage()
    y = PAGE_HEIGHT - 50.0
    page.text(40, y, DOCUMENT_TITLE, size=16, bold=True)
    demos = [m for m in models if m.demonstration]
    if demos:
        y -= 24
        page.text(40, y, WARNING_TEXT, size=14, bold=True, colour=(0.85, 0.0, 0.0))
        for model in demos:
            y -= 13
            page.text(40, y, f"{model.model_id}: {model.intended_use}"[:120], size=7, colour=(0.6, 0.0, 0.0))
    y -= 300
    page.place_image(key_image, 40, y, 280, 280)
    page.text(40, y - 14, f"Axial slice {slice_index + 1} of {slice_count}; green: tumour outline", size=8)
    volume_of = {v.region: v for v in volumes}
    legend_y = y + 262
    tumour = volume_of.get("tumour")
    if tumour is not None:
        page.rectangle(335, legend_y, 10, 10, TUMOUR_OUTLINE)
        page.text(352, legend_y + 1, f"Tumour: {tumour.volume_ml:.2f} mL", size=9)
    for number, name in enumerate(habitat_regions):
        legend_y -= 16
        page.rectangle(335, legend_y, 10, 10, HABITAT_COLOURS[number % len(HABITAT_COLOURS)])
        region = volume_of.get(name)
        label = text = region_label(name)
        if region is not None:
            fraction = "" if region.fraction_of_tumour is None else f" ({100 * region.fraction_of_tumour:.1f} %)"
            text = f"{label}: {region.volume_ml:.2f} mL{fraction}"
        page.text(352, legend_y + 1, text, size=9)
    y -= 40
    page.text(40, y, "Risk results", size=12, bold=True)
    for model in models:
        for line in _model_lines(model):
            y -= 13
            page.text(40, y, line[:130], size=8)
    if not models:
        y -= 13
        page.text(40, y, "No model result.", size=8)
    page.text(40, 30, f"OncoHabitat {algorithm_version}. The DICOM SEG and SR of this study hold the regions.", size=7)
    return page.to_bytes()


def _copy(source: Dataset, target: Dataset, keywords: Sequence[str]) -> None:
    for keyword in keywords:
        if keyword in source:
            target[keyword] = source[keyword]


def build_key_image_pdf(
    source_datasets: Sequence[Dataset],
    pdf: bytes,
    *,
    uid: Callable[[str], str],
    referenced: Sequence[Dataset] = (),
    series_number: int = 9003,
    series_description: str = "OncoHabitat key-image summary",
) -> Dataset:
    """Encapsulated PDF object of ``pdf`` in the source study (patient and study modules copied from the
    first source, malformed values dropped); ``referenced`` (e.g. the SEG and the displayed slice) go to the
    Source Instance Sequence. UIDs: ``uid("pdf-series")``, ``uid("pdf")``.

    Raises:
        ExportError: ``NO_SOURCE``, ``INVALID_SOURCE``.
    """
    first = with_type2_defaults(_ordered_sources(source_datasets)[0])
    now = datetime.datetime.now(datetime.UTC)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(ENCAPSULATED_PDF)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(uid("pdf"))
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if "SpecificCharacterSet" in first:
        ds.SpecificCharacterSet = first.SpecificCharacterSet
    ds.SOPClassUID = ENCAPSULATED_PDF
    ds.SOPInstanceUID = uid("pdf")
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    _copy(first, ds, _PATIENT_KEYWORDS)
    _copy(first, ds, _STUDY_KEYWORDS)
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = uid("pdf-series")
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description[:64]
    ds.Manufacturer = coding.MANUFACTURER
    ds.ConversionType = "SYN"
    ds.InstanceNumber = 1
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.AcquisitionDateTime = ""
    ds.BurnedInAnnotation = "NO"
    ds.DocumentTitle = DOCUMENT_TITLE
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    sources = []
    for item in referenced:
        reference = Dataset()
        reference.ReferencedSOPClassUID = item.SOPClassUID
        reference.ReferencedSOPInstanceUID = item.SOPInstanceUID
        sources.append(reference)
    if sources:
        ds.SourceInstanceSequence = sources
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    truncate_overlong_values(ds)
    logger.info("built key-image PDF object (%d bytes of PDF)", len(pdf))
    return ds


def habitat_masks(segments: Sequence[RegionSegment]) -> tuple[list[str], list[NDArray[np.bool_]]]:
    """(region names, masks) of the habitat segments, in segment order."""
    habitats = [s for s in segments if s.kind == "habitat"]
    return [s.region for s in habitats], [s.mask for s in habitats]

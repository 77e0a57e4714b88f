"""DICOM input/output shared by the listener and the orchestrator.

* :mod:`.scan` — header-only inventory of received files (:func:`scan_instances`).
* :mod:`.series` — classic single-frame CT/MR series -> SimpleITK volume (:func:`load_series`).
* :mod:`.masks` — RTSTRUCT / SEG -> binary mask on the series grid (:func:`load_mask`).
* :mod:`.export` — DICOM SEG of a label map and TID 1500 SR of the risk result.
* :mod:`.seg_export` — one SEG with a segment per region (tumour, habitats, ring, band) on the source grid.
* :mod:`.sr_export` — one TID 1500 SR per job: every model's result, region volumes and habitat fractions.
* :mod:`.key_image` (+ :mod:`.pdf_page`) — the Encapsulated PDF key-image summary.
* :mod:`.conformance` — patient/study values made acceptable in derived objects (malformed values dropped).
"""

from oncohabitat.dicomio.errors import DicomIOError, ExportError, MaskError, MaskSelectionError, SeriesError
from oncohabitat.dicomio.export import ResultForSR, build_result_sr, build_seg
from oncohabitat.dicomio.masks import RasterisedMask, load_mask, rasterise_rtstruct, rasterise_seg
from oncohabitat.dicomio.roi_selection import DEFAULT_ROI_PATTERN, RoiSelection, select_roi
from oncohabitat.dicomio.scan import InstanceInfo, InstanceKind, group_by_series, scan_instances
from oncohabitat.dicomio.series import LoadedSeries, SeriesLoadOptions, assemble_series, load_series

__all__ = [
    "DEFAULT_ROI_PATTERN",
    "DicomIOError",
    "ExportError",
    "InstanceInfo",
    "InstanceKind",
    "LoadedSeries",
    "MaskError",
    "MaskSelectionError",
    "RasterisedMask",
    "ResultForSR",
    "RoiSelection",
    "SeriesError",
    "SeriesLoadOptions",
    "assemble_series",
    "build_result_sr",
    "build_seg",
    "group_by_series",
    "load_mask",
    "load_series",
    "rasterise_rtstruct",
    "rasterise_seg",
    "scan_instances",
    "select_roi",
]

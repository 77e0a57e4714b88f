"""DICOM input/output shared by the listener and the orchestrator.

* :mod:`.scan` — header-only inventory of received files (:func:`scan_instances`).
* :mod:`.series` — classic single-frame CT/MR series -> SimpleITK volume (:func:`load_series`).
* :mod:`.masks` — RTSTRUCT / SEG -> binary mask on the series grid (:func:`load_mask`).
* :mod:`.export` — what the derived objects share (algorithm identification, segment references).
* :mod:`.seg_export` — one SEG with a segment per region (tumour, habitats, ring, band) on the source grid.
* :mod:`.sr_export` — one TID 1500 SR per job: every model's result, region volumes and habitat fractions.
* :mod:`.key_image` (+ :mod:`.pdf_page`) — the Encapsulated PDF key-image summary.
* :mod:`.conformance` — patient/study values made acceptable in derived objects (malformed values dropped).

The names below are imported from their submodule on first use (PEP 562 ``__getattr__``), not when the
package is imported: the listener imports :mod:`.dce` and :mod:`.dce_handoff` (headers only) and must not
load SimpleITK, OpenCV or highdicom, which :mod:`.series`, :mod:`.masks` and :mod:`.export` import and which
its image does not carry (deploy/README.md). New code should import from the submodule.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from oncohabitat.dicomio.errors import DicomIOError, ExportError, MaskError, MaskSelectionError, SeriesError
    from oncohabitat.dicomio.masks import RasterisedMask, load_mask, rasterise_rtstruct, rasterise_seg
    from oncohabitat.dicomio.roi_selection import DEFAULT_ROI_PATTERN, RoiSelection, select_roi
    from oncohabitat.dicomio.scan import InstanceInfo, InstanceKind, group_by_series, scan_instances
    from oncohabitat.dicomio.series import LoadedSeries, SeriesLoadOptions, assemble_series, load_series

# public name -> submodule that defines it
_EXPORTS = {
    "DicomIOError": "errors",
    "ExportError": "errors",
    "MaskError": "errors",
    "MaskSelectionError": "errors",
    "SeriesError": "errors",
    "RasterisedMask": "masks",
    "load_mask": "masks",
    "rasterise_rtstruct": "masks",
    "rasterise_seg": "masks",
    "DEFAULT_ROI_PATTERN": "roi_selection",
    "RoiSelection": "roi_selection",
    "select_roi": "roi_selection",
    "InstanceInfo": "scan",
    "InstanceKind": "scan",
    "group_by_series": "scan",
    "scan_instances": "scan",
    "LoadedSeries": "series",
    "SeriesLoadOptions": "series",
    "assemble_series": "series",
    "load_series": "series",
}

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
    "RoiSelection",
    "SeriesError",
    "SeriesLoadOptions",
    "assemble_series",
    "group_by_series",
    "load_mask",
    "load_series",
    "rasterise_rtstruct",
    "rasterise_seg",
    "scan_instances",
    "select_roi",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

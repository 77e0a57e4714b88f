"""Ground-truth volumes (NRRD via SimpleITK, on the exact DICOM geometry) and the metadata JSON.

Files in ``<out>/ground_truth/`` (uint8, arrays (z, y, x), geometry identical to the DICOM series as read by
SimpleITK's ImageSeriesReader: same size, spacing, origin and direction):

* ``tumour_mask.nrrd``: 1 inside the lesion (all compartments and necrosis);
* ``compartments.nrrd``: 0 outside the tumour or necrotic, 1 persistent (poorly perfused),
  2 plateau, 3 wash-out (highly perfused);
* ``necrosis_mask.nrrd``: 1 in the non-enhancing core (empty without ``necrosis``);
* ``breast_mask.nrrd``: breast fat, fibroglandular tissue and lesion; skin and chest wall excluded;
* ``tissue_labels.nrrd``: every :class:`~oncohabitat.phantom.anatomy.Tissue` label.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from oncohabitat.common.volume import Geometry
from oncohabitat.phantom.anatomy import BREAST_LABELS, TUMOUR_LABELS, Tissue

LabelArray = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class GroundTruthPaths:
    """Paths of the ground-truth volumes."""

    tumour_mask: Path
    compartments: Path
    necrosis_mask: Path
    breast_mask: Path
    tissue_labels: Path

    def relative_to(self, root: Path) -> dict[str, str]:
        """POSIX paths relative to ``root``, keyed by volume name."""
        return {name: getattr(self, name).relative_to(root).as_posix() for name in self.__dataclass_fields__}


def _lookup(labels: LabelArray, mapping: dict[Tissue, int]) -> LabelArray:
    table = np.zeros(len(Tissue), dtype=np.uint8)
    for tissue, value in mapping.items():
        table[tissue] = value
    return table[labels]


def tumour_mask(labels: LabelArray) -> LabelArray:
    """1 inside the tumour (compartments and necrosis), else 0."""
    return _lookup(labels, dict.fromkeys(TUMOUR_LABELS, 1))


def compartment_map(labels: LabelArray) -> LabelArray:
    """0 outside/necrotic, 1 persistent, 2 plateau, 3 wash-out."""
    return _lookup(labels, {Tissue.LESION_PERSISTENT: 1, Tissue.LESION_PLATEAU: 2, Tissue.LESION_WASHOUT: 3})


def write_label_volumes(gt_dir: Path, geometry: Geometry, labels: LabelArray) -> GroundTruthPaths:
    """Write the five ground-truth volumes derived from the tissue ``labels`` (z, y, x)."""
    gt_dir.mkdir(parents=True, exist_ok=True)
    paths = GroundTruthPaths(
        tumour_mask=gt_dir / "tumour_mask.nrrd",
        compartments=gt_dir / "compartments.nrrd",
        necrosis_mask=gt_dir / "necrosis_mask.nrrd",
        breast_mask=gt_dir / "breast_mask.nrrd",
        tissue_labels=gt_dir / "tissue_labels.nrrd",
    )
    derived: list[tuple[Path, Callable[[LabelArray], LabelArray]]] = [
        (paths.tumour_mask, tumour_mask),
        (paths.compartments, compartment_map),
        (paths.necrosis_mask, lambda lab: _lookup(lab, {Tissue.NECROSIS: 1})),
        (paths.breast_mask, lambda lab: _lookup(lab, dict.fromkeys(BREAST_LABELS, 1))),
        (paths.tissue_labels, lambda lab: lab),
    ]
    for path, derive in derived:  # one volume at a time keeps memory bounded
        sitk.WriteImage(geometry.sitk_image(derive(labels)), str(path), useCompression=True)
    return paths


def geometry_json(geometry: Geometry, size_xyz: tuple[int, int, int]) -> dict[str, Any]:
    """Grid of ``size_xyz`` voxels on ``geometry`` as JSON (SimpleITK (x, y, z) order, mm)."""
    return {
        "size_xyz": list(size_xyz),
        "spacing_mm_xyz": list(geometry.spacing),
        "origin_lps_mm_xyz": list(geometry.origin),
        "direction": list(geometry.direction),
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON with sorted keys (deterministic bytes)."""
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")

"""One binary DICOM SEG holding every region of a job: tumour, habitats 1..K, peritumoral ring, stroma band.

The regions service returns its label maps on a crop of the phase grid; :func:`on_reference_grid` places
each on the full grid of the reference (source) series by nearest-neighbour resampling (exact for a
sub-grid: voxel centres coincide), so that the SEG's frames reference the source images one to one.
Segments may overlap (the habitats lie inside the tumour), which a BINARY SEG allows. Empty regions are
left out, so segment numbers are 1..n over the regions that hold a voxel, in :data:`REGION_ORDER`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
import SimpleITK as sitk
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from oncohabitat.dicomio import coding
from oncohabitat.dicomio.conformance import no_phi_warnings, truncate_overlong_values, with_type2_defaults
from oncohabitat.dicomio.errors import ExportError
from oncohabitat.dicomio.export import SegmentCoding, _check_mask_shape, _ordered_sources, algorithm_identification

logger = logging.getLogger(__name__)

#: Segment property of the tumour (as the tumour-only SEG), and of habitats and bands (tissue regions).
TUMOUR_CODING: SegmentCoding = (coding.TUMOUR_CATEGORY, coding.TUMOUR_TYPE)
TISSUE_CODING: SegmentCoding = (codes.SCT.Tissue, codes.SCT.Tissue)
#: Region kinds in segment order.
REGION_ORDER = ("tumour", "habitat", "ring", "stroma")
_HABITAT = re.compile(r"^habitat_(\d+)$")
_BAND = re.compile(r"^(peritumoral_ring|stroma_band)_([0-9.]+)mm$")


@dataclass(frozen=True)
class RegionSegment:
    """One segment: region name (``tumour``, ``habitat_k``, ``peritumoral_ring_<w>mm``, ...), the label
    and description shown in viewers, its coded property and its mask (z, y, x, bool) on the source grid
    (slices in ascending position along the slice normal)."""

    region: str
    label: str
    description: str
    coding: SegmentCoding
    mask: NDArray[np.bool_]

    @property
    def kind(self) -> str:
        """``tumour``, ``habitat``, ``ring``, ``stroma`` or ``other``."""
        return region_kind(self.region)


def region_kind(region: str) -> str:
    """Kind of a region name (see :data:`REGION_ORDER`); ``other`` for names the SEG does not carry."""
    if region == "tumour":
        return "tumour"
    if _HABITAT.match(region):
        return "habitat"
    band = _BAND.match(region)
    if band:
        return "ring" if band.group(1) == "peritumoral_ring" else "stroma"
    return "other"


def region_label(region: str) -> str:
    """Viewer label of a region: ``Tumour``, ``Habitat 2``, ``Peritumoral ring 5 mm``, ``Stroma band 20 mm``."""
    habitat = _HABITAT.match(region)
    if habitat:
        return f"Habitat {int(habitat.group(1))}"
    band = _BAND.match(region)
    if band:
        words = "Peritumoral ring" if band.group(1) == "peritumoral_ring" else "Stroma band"
        return f"{words} {band.group(2)} mm"
    return region.replace("_", " ").capitalize()


def region_segment(region: str, description: str, mask: NDArray[np.bool_]) -> RegionSegment:
    """A :class:`RegionSegment` with the label and coding of ``region``'s kind."""
    kind = region_kind(region)
    if kind == "other":
        raise ExportError("UNKNOWN_LABEL", f"region {region!r} is not carried by the SEG")
    return RegionSegment(
        region=region,
        label=region_label(region),
        description=description or region_label(region),
        coding=TUMOUR_CODING if kind == "tumour" else TISSUE_CODING,
        mask=np.asarray(mask, dtype=bool),
    )


def on_reference_grid(image: sitk.Image, reference: sitk.Image) -> NDArray[np.uint8]:
    """Label image (any grid) on ``reference``'s grid (z, y, x, uint8): nearest neighbour, 0 outside."""
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ExportError("GRID_MISMATCH", "label maps must be scalar 3-D images")
    labels = sitk.Cast(image, sitk.sitkUInt8)
    offset = _sub_grid_offset(labels, reference)
    if offset is not None:  # voxel centres coincide: nearest neighbour is a copy into the covered box
        placed = np.zeros(tuple(reversed(reference.GetSize())), dtype=np.uint8)
        source = sitk.GetArrayViewFromImage(labels)
        target = tuple(slice(o, o + n) for o, n in zip(reversed(offset), source.shape, strict=True))
        placed[target] = source
        return placed
    resampled = sitk.Resample(labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return np.asarray(sitk.GetArrayFromImage(resampled), dtype=np.uint8)


def _sub_grid_offset(image: sitk.Image, reference: sitk.Image, tolerance: float = 1e-3) -> list[int] | None:
    """(x, y, z) index of ``image``'s first voxel in ``reference`` when ``image`` is a sub-grid of it: same
    spacing and direction, origin on a reference voxel centre (within ``tolerance`` voxels), every voxel
    inside. None otherwise (the caller resamples)."""
    if not (
        np.allclose(image.GetSpacing(), reference.GetSpacing(), rtol=0, atol=1e-6)
        and np.allclose(image.GetDirection(), reference.GetDirection(), rtol=0, atol=1e-9)
    ):
        return None
    index = np.asarray(reference.TransformPhysicalPointToContinuousIndex(image.GetOrigin()))
    rounded = np.round(index)
    if not np.all(np.abs(index - rounded) <= tolerance):
        return None
    offset = [int(v) for v in rounded]
    inside = all(o >= 0 and o + n <= m for o, n, m in zip(offset, image.GetSize(), reference.GetSize(), strict=True))
    return offset if inside else None


def sort_segments(segments: Sequence[RegionSegment]) -> list[RegionSegment]:
    """Non-empty segments in :data:`REGION_ORDER` (habitats by number, bands by width), duplicates refused."""
    names = [s.region for s in segments]
    if len(set(names)) != len(names):
        raise ExportError("UNKNOWN_LABEL", "a region is listed twice")

    def key(segment: RegionSegment) -> tuple[int, float]:
        number = re.findall(r"[0-9.]+", segment.region)
        return (REGION_ORDER.index(segment.kind), float(number[0].rstrip(".")) if number else 0.0)

    return sorted((s for s in segments if s.mask.any()), key=key)


def _occupied_slab(
    segments: Sequence[RegionSegment], ordered: Sequence[Dataset]
) -> tuple[NDArray[np.bool_], list[hd.PlanePositionSequence] | None]:
    """(z, y, x, segment) stack of the slices from the first to the last that holds a voxel of any segment,
    and their plane positions (None when that is every slice: highdicom then takes the sources' own).

    Empty frames are omitted from the SEG either way; handing highdicom only the occupied slab spares its
    whole-volume checks (an overlap sum over every voxel of every segment) on a large series.
    """
    occupied = np.zeros(len(ordered), dtype=bool)
    for segment in segments:
        occupied |= segment.mask.any(axis=(1, 2))
    first, last = (int(i) for i in np.flatnonzero(occupied)[[0, -1]])
    if first == 0 and last == len(ordered) - 1:
        return np.stack([s.mask for s in segments], axis=-1), None
    stack = np.stack([s.mask[first : last + 1] for s in segments], axis=-1)
    positions = [
        hd.PlanePositionSequence(
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            image_position=[float(v) for v in ordered[k].ImagePositionPatient],
        )
        for k in range(first, last + 1)
    ]
    return stack, positions


def build_region_seg(
    source_datasets: Sequence[Dataset],
    segments: Sequence[RegionSegment],
    *,
    algorithm_version: str,
    series_instance_uid: str,
    sop_instance_uid: str,
    series_number: int = 9001,
    series_description: str = "OncoHabitat habitats",
) -> hd.seg.Segmentation:
    """Binary SEG with one segment per non-empty region (numbers 1..n in :func:`sort_segments` order).

    Args:
        source_datasets: the reference series' single-frame images, any order (headers suffice).
        segments: the regions; masks on the source grid (see :class:`RegionSegment`).
        algorithm_version: OncoHabitat version for the algorithm identification.
        series_instance_uid / sop_instance_uid: the object's UIDs (derived from the job id by the caller).

    Raises:
        ExportError: ``NO_SOURCE``, ``INVALID_SOURCE``, ``GRID_MISMATCH``, ``UNKNOWN_LABEL``, ``EMPTY_MASK``,
            ``SEG_BUILD_FAILED``.
    """
    ordered = _ordered_sources(source_datasets)
    kept = sort_segments(segments)
    if not kept:
        raise ExportError("EMPTY_MASK", "every region is empty")
    for segment in kept:
        _check_mask_shape(segment.mask, ordered)
    pixel_array, plane_positions = _occupied_slab(kept, ordered)
    algorithm = algorithm_identification(algorithm_version)
    descriptions = []
    for number, segment in enumerate(kept, start=1):
        description = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=segment.label[:64],
            segmented_property_category=segment.coding[0],
            segmented_property_type=segment.coding[1],
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        description.SegmentDescription = segment.description[:1024]
        descriptions.append(description)
    try:
        with no_phi_warnings():
            seg = hd.seg.Segmentation(
                source_images=[with_type2_defaults(ordered[0]), *ordered[1:]],
                pixel_array=pixel_array,
                plane_positions=plane_positions,
                segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=descriptions,
                series_instance_uid=series_instance_uid,
                series_number=series_number,
                sop_instance_uid=sop_instance_uid,
                instance_number=1,
                manufacturer=coding.MANUFACTURER,
                manufacturer_model_name=coding.ALGORITHM_NAME,
                software_versions=algorithm_version,
                device_serial_number="0",
                content_label="ONCOHABITAT",
                content_description=series_description[:64],
            )
    except (ValueError, TypeError, AttributeError) as exc:
        raise ExportError("SEG_BUILD_FAILED", f"highdicom rejected the segmentation ({type(exc).__name__})") from exc
    seg.SeriesDescription = series_description[:64]
    truncate_overlong_values(seg)
    logger.info("built region SEG: %d segment(s) on %d source images", len(kept), len(ordered))
    return seg

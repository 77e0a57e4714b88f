"""Tumour masks of the CT phantom as DICOM RTSTRUCT (rt-utils) or DICOM SEG (highdicom).

Both reference the CT series; every UID and date/time is derived from the study identity so repeated
runs give identical objects. Masks are boolean arrays (z, y, x) with z ascending (inferior to superior),
the order of the CT files passed in.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom import dcmread
from pydicom.sr.codedict import codes
from pydicom.valuerep import DA, TM

import oncohabitat
from oncohabitat.phantom.dicom_common import (
    MANUFACTURER,
    MODEL_NAME,
    STUDY_START_S,
    StudyIdentity,
    format_date,
    format_time,
)

logger = logging.getLogger(__name__)

MASK_KINDS = ("rtstruct", "seg", "both")
ROI_NAME = "Tumour"
_CREATION_TIME_S = STUDY_START_S + 3600.0


def write_rtstruct(ct_dir: Path, out_dir: Path, identity: StudyIdentity, mask: npt.NDArray[np.bool_]) -> Path:
    """RTSTRUCT with one ROI "Tumour" drawn from ``mask`` (z, y, x) on the CT series in ``ct_dir``."""
    from rt_utils import RTStructBuilder  # heavy (OpenCV): imported only when a CT mask is written

    with warnings.catch_warnings():
        # rt-utils sets FileDataset.is_little_endian / is_implicit_VR, deprecated in pydicom 3
        warnings.filterwarnings("ignore", message=r".*FileDataset\.is_", category=DeprecationWarning)
        rtstruct = RTStructBuilder.create_new(dicom_series_path=str(ct_dir))
    rtstruct.add_roi(mask=np.transpose(mask, (1, 2, 0)), name=ROI_NAME, color=[255, 0, 0])
    ds = rtstruct.ds
    uid = identity.uid("rtstruct-instance")
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.SeriesInstanceUID = identity.uid("rtstruct-series")
    ds.SeriesNumber = 2
    ds.InstanceNumber = 1
    ds.SeriesDescription = "Tumour contours (synthetic phantom)"
    date, time = format_date(identity.study_date), format_time(_CREATION_TIME_S)
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.StructureSetDate, ds.StructureSetTime = date, time
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.StructureSetLabel = ROI_NAME
    ds.FrameOfReferenceUID = identity.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = MANUFACTURER
    ds.InstitutionName = ""
    ds.OperatorsName = ""
    ds.ReferringPhysicianName = ""
    ds.AccessionNumber = ""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "RS_00001.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def write_seg(ct_files: tuple[Path, ...], out_dir: Path, identity: StudyIdentity, mask: npt.NDArray[np.bool_]) -> Path:
    """Binary DICOM SEG with one segment "Tumour" from ``mask`` (z, y, x) aligned with ``ct_files``."""
    import highdicom as hd  # heavy: imported only when a SEG is written

    sources = [dcmread(path) for path in ct_files]
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=ROI_NAME,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="oncohabitat-phantom",
            family=codes.cid7162.MorphologicalOperations,
            version=oncohabitat.__version__,
        ),
        tracking_uid=identity.uid("seg-tracking"),
        tracking_id=ROI_NAME,
    )
    date, time = format_date(identity.study_date), format_time(_CREATION_TIME_S)
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=mask.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=identity.uid("seg-series"),
        series_number=3,
        sop_instance_uid=identity.uid("seg-instance"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL_NAME,
        software_versions=oncohabitat.__version__,
        device_serial_number="0",
        series_description="Tumour segmentation (synthetic phantom)",
        content_date=date,
        content_time=time,
        series_date=date,
        series_time=time,
    )
    # highdicom stamps creation/contribution times with "now": pin them for reproducible files.
    seg.InstanceCreationDate, seg.InstanceCreationTime = DA(date), TM(time)
    for item in seg.get("ContributingEquipmentSequence", []):
        item.ContributionDateTime = date + time
    organisation_uid = identity.uid("seg-dimension-organisation")
    for item in seg.DimensionOrganizationSequence:
        item.DimensionOrganizationUID = organisation_uid
    for item in seg.DimensionIndexSequence:
        item.DimensionOrganizationUID = organisation_uid
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "SEG_00001.dcm"
    seg.save_as(path)
    logger.debug("SEG written with %d frames", int(seg.NumberOfFrames))
    return path

"""DICOM building blocks shared by the MR and CT writers (patient, study, plane, pixel modules).

Patient identity is obviously synthetic: PatientName ``PHANTOM^<seed>``, PatientID ``PH<seed>``, no birth
date. Dates and times are derived from the seed (study on 2020-01-01 + seed mod 1461 days, 09:00).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian
from pydicom.valuerep import format_number_as_ds

import oncohabitat
from oncohabitat.common.volume import Geometry
from oncohabitat.phantom.uids import phantom_uid

MANUFACTURER = "OncoHabitat"
MODEL_NAME = "Synthetic breast phantom"
STUDY_START_S = 9 * 3600.0


@dataclass(frozen=True)
class StudyIdentity:
    """Synthetic patient and study attributes; ``uid_key`` prefixes every UID of the study."""

    seed: int
    uid_key: str
    study_description: str
    patient_age_years: int | None = None

    @property
    def study_uid(self) -> str:
        """StudyInstanceUID."""
        return phantom_uid(self.uid_key, "study")

    @property
    def frame_of_reference_uid(self) -> str:
        """FrameOfReferenceUID shared by every image of the study."""
        return phantom_uid(self.uid_key, "frame-of-reference")

    @property
    def study_date(self) -> datetime.date:
        """Study date (deterministic in the seed)."""
        return datetime.date(2020, 1, 1) + datetime.timedelta(days=self.seed % 1461)

    def uid(self, *parts: object) -> str:
        """Another UID of this study (series, instance, ...)."""
        return phantom_uid(self.uid_key, *parts)


def format_date(date: datetime.date) -> str:
    """DICOM DA (YYYYMMDD)."""
    return date.strftime("%Y%m%d")


def format_time(seconds_after_midnight: float) -> str:
    """DICOM TM (HHMMSS.ffffff) of a time of day given in seconds."""
    micro = round(seconds_after_midnight * 1e6)
    seconds, micro = divmod(micro, 1_000_000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}{minutes:02d}{secs:02d}.{micro:06d}"


def new_dataset(sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    """Dataset with file meta (explicit VR little endian) and the SOP Common module."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    return ds


def apply_patient_and_study(ds: Dataset, identity: StudyIdentity) -> None:
    """Patient, General Study, Patient Study and General Equipment modules."""
    ds.PatientName = f"PHANTOM^{identity.seed}"
    ds.PatientID = f"PH{identity.seed}"
    ds.PatientBirthDate = ""
    ds.PatientSex = "F"
    if identity.patient_age_years is not None:
        ds.PatientAge = f"{identity.patient_age_years:03d}Y"
    ds.StudyInstanceUID = identity.study_uid
    ds.StudyDate = format_date(identity.study_date)
    ds.StudyTime = format_time(STUDY_START_S)
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.StudyDescription = identity.study_description
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = MODEL_NAME
    ds.SoftwareVersions = oncohabitat.__version__
    ds.FrameOfReferenceUID = identity.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""


def apply_plane(ds: Dataset, geometry: Geometry, k: int) -> None:
    """Image Plane module of slice ``k`` (PixelSpacing is row spacing (y) then column spacing (x))."""
    position = geometry.slice_position(k)
    ds.PixelSpacing = [f"{geometry.spacing[1]:.6g}", f"{geometry.spacing[0]:.6g}"]
    ds.ImageOrientationPatient = [f"{v:.6g}" for v in geometry.image_orientation_patient]
    ds.ImagePositionPatient = [format_number_as_ds(round(v, 6)) for v in position]
    ds.SliceThickness = f"{geometry.spacing[2]:.6g}"
    ds.SliceLocation = format_number_as_ds(round(position[2], 6))


def apply_pixels(ds: Dataset, pixels: npt.NDArray[np.uint16], bits_stored: int) -> None:
    """Image Pixel module for unsigned 16-bit grey-scale pixels (y, x)."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()


def write_dataset(ds: Dataset, path: Path) -> None:
    """Write ``ds`` as a DICOM Part 10 file."""
    ds.save_as(path, enforce_file_format=True)

"""Builders of small synthetic DICOM objects for the dicomio tests (this module holds no tests).

Geometry conventions follow DICOM: ``PixelSpacing`` = [row spacing (y), column spacing (x)] in mm,
``ImageOrientationPatient`` = row direction then column direction, positions in mm (LPS).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def make_slice(
    z_mm: float,
    *,
    pixels: NDArray[np.int16],
    series_uid: str,
    frame_uid: str,
    pixel_spacing: tuple[float, float] = (1.0, 1.0),
    origin_xy: tuple[float, float] = (-10.0, -20.0),
    orientation: Sequence[float] = AXIAL,
    slope: float = 1.0,
    intercept: float = -1024.0,
) -> Dataset:
    """One CT slice at z = ``z_mm`` (axial orientation unless ``orientation`` is given)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    sop_uid = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.Modality = "CT"
    ds.PatientName = "Synthetic^Patient"
    ds.PatientID = "SYNTH-0001"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyID = "1"
    ds.AccessionNumber = "ACC-SYNTH"
    ds.StudyDate = "20240101"
    ds.StudyTime = "120000"
    ds.ReferringPhysicianName = ""
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    normal = np.cross(orientation[:3], orientation[3:])
    position = np.asarray([origin_xy[0], origin_xy[1], 0.0]) + z_mm * normal
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.PixelSpacing = [float(pixel_spacing[0]), float(pixel_spacing[1])]
    ds.SliceThickness = 1.0
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    ds.PixelData = np.ascontiguousarray(pixels.astype(np.int16)).tobytes()
    return ds


def make_series(
    z_positions_mm: Sequence[float],
    *,
    shape: tuple[int, int] = (6, 5),
    pixel_spacing: tuple[float, float] = (1.0, 1.0),
    slope: float = 1.0,
    intercept: float = -1024.0,
) -> list[Dataset]:
    """Slices at the given z positions; slice k holds raw values ``k * 100 + row * 10 + column``."""
    series_uid = generate_uid()
    frame_uid = generate_uid()
    rows, columns = np.mgrid[0 : shape[0], 0 : shape[1]]
    return [
        make_slice(
            z,
            pixels=(k * 100 + rows * 10 + columns).astype(np.int16),
            series_uid=series_uid,
            frame_uid=frame_uid,
            pixel_spacing=pixel_spacing,
            slope=slope,
            intercept=intercept,
        )
        for k, z in enumerate(z_positions_mm)
    ]

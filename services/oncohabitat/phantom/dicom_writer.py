"""MR Image Storage writer for the DCE phantom (classic IOD, one slice per file).

Layouts:

* ``per-phase``: one series per phase in ``dicom/series_01`` (pre-contrast) ... ``dicom/series_NN``;
* ``multi-phase``: one series ``dicom/series_01`` holding every phase, told apart by
  TemporalPositionIdentifier (1 = pre-contrast), AcquisitionNumber and TriggerTime.

Both layouts carry TriggerTime (ms since the pre-contrast acquisition; optional, see :class:`DceTiming`),
AcquisitionTime/ContentTime (time of day of the phase), TemporalPositionIdentifier and
NumberOfTemporalPositions; post-contrast images carry the Contrast/Bolus module. InstanceNumber counts
from the most superior slice downwards (as many scanners do), so readers must sort by
ImagePositionPatient, not by InstanceNumber.
File names are ``IM_<InstanceNumber:05d>.dcm``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.uid import MRImageStorage

from oncohabitat.common.volume import Geometry
from oncohabitat.phantom.dicom_common import (
    STUDY_START_S,
    StudyIdentity,
    apply_patient_and_study,
    apply_pixels,
    apply_plane,
    format_date,
    format_time,
    new_dataset,
    write_dataset,
)
from oncohabitat.phantom.errors import PhantomError
from oncohabitat.phantom.progress import ProgressCallback, report

LAYOUTS = ("per-phase", "multi-phase")
#: Seconds between the start of the study and the pre-contrast acquisition (localisers, T2, ...).
DCE_OFFSET_S = 600.0

#: Returns the stored pixels (y, x) of slice k in phase p.
SliceSource = Callable[[int, int], npt.NDArray[np.uint16]]


@dataclass(frozen=True)
class DceTiming:
    """Phase times relative to the pre-contrast acquisition and the injection time, in s.

    ``trigger_time``: write TriggerTime (ms since the pre-contrast acquisition), as several vendors do for
    DCE series. The standard makes TriggerTime conditional on cardiac/pulse gating in Scan Options, so
    dciodvfy reports it as "present when condition unsatisfied"; pass False for strictly valid files.
    """

    phase_times_s: tuple[float, ...]
    injection_time_s: float
    trigger_time: bool = False


@dataclass(frozen=True)
class WrittenSeries:
    """Series directories and, per phase, the files sorted by slice index (inferior to superior)."""

    series_dirs: tuple[Path, ...]
    phase_files: tuple[tuple[Path, ...], ...]


def _mr_dataset(
    identity: StudyIdentity,
    geometry: Geometry,
    timing: DceTiming,
    phase: int,
    k: int,
    series_index: int,
    instance_number: int,
    pixels: npt.NDArray[np.uint16],
    multi_phase: bool,
) -> Dataset:
    n_phases = len(timing.phase_times_s)
    ds = new_dataset(MRImageStorage, identity.uid("mr-image", phase, k))
    apply_patient_and_study(ds, identity)
    dce_start = STUDY_START_S + DCE_OFFSET_S
    acquisition = dce_start + timing.phase_times_s[phase]
    series_start = dce_start if multi_phase else acquisition
    date = format_date(identity.study_date)
    ds.Modality = "MR"
    ds.SeriesInstanceUID = identity.uid("mr-series", series_index)
    ds.SeriesNumber = series_index + 1
    if multi_phase:
        ds.SeriesDescription = "DCE T1 FS dynamic"
    else:
        ds.SeriesDescription = "DCE T1 FS pre" if phase == 0 else f"DCE T1 FS post {phase}"
    ds.ProtocolName = "DCE breast"
    ds.SeriesDate, ds.SeriesTime = date, format_time(series_start)
    ds.BodyPartExamined = "BREAST"
    ds.PatientPosition = "HFP"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.ImageLaterality = "B"
    ds.InstanceNumber = instance_number
    ds.AcquisitionNumber = phase + 1
    ds.AcquisitionDate, ds.AcquisitionTime = date, format_time(acquisition)
    ds.ContentDate, ds.ContentTime = date, format_time(acquisition)
    apply_plane(ds, geometry, k)
    apply_pixels(ds, pixels, bits_stored=12)
    ds.WindowCenter, ds.WindowWidth = 600, 1200
    ds.ScanningSequence = "GR"
    ds.SequenceVariant = ["SP", "SS"]
    ds.ScanOptions = "FS"
    ds.MRAcquisitionType = "3D"
    ds.SequenceName = "fl3d_dce"
    ds.RepetitionTime = "4.5"
    ds.EchoTime = "2.1"
    ds.EchoTrainLength = 1
    ds.FlipAngle = "10"
    ds.NumberOfAverages = "1"
    ds.ImagingFrequency = "127.74"
    ds.ImagedNucleus = "1H"
    ds.MagneticFieldStrength = "3"
    ds.SpacingBetweenSlices = f"{geometry.spacing[2]:.6g}"
    if timing.trigger_time:
        ds.TriggerTime = f"{timing.phase_times_s[phase] * 1000.0:.1f}"
    ds.TemporalPositionIdentifier = phase + 1
    ds.NumberOfTemporalPositions = n_phases
    if phase > 0:
        ds.ContrastBolusAgent = "Gadoterate meglumine 0.5 mmol/mL"
        ds.ContrastBolusRoute = "IV"
        ds.ContrastBolusVolume = "15"
        ds.ContrastBolusStartTime = format_time(dce_start + timing.injection_time_s)
    return ds


def write_mr_series(
    dicom_dir: Path,
    identity: StudyIdentity,
    geometry: Geometry,
    timing: DceTiming,
    source: SliceSource,
    layout: str,
    n_slices: int,
    progress: ProgressCallback | None = None,
) -> WrittenSeries:
    """Write every phase and ``n_slices`` slices of ``source`` below ``dicom_dir`` in ``layout``; phase by phase."""
    if layout not in LAYOUTS:
        raise PhantomError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    multi_phase = layout == "multi-phase"
    n_phases = len(timing.phase_times_s)
    series_dirs: list[Path] = []
    phase_files: list[tuple[Path, ...]] = []
    total, done = n_phases * n_slices, 0
    for phase in range(n_phases):
        series_index = 0 if multi_phase else phase
        series_dir = dicom_dir / f"series_{series_index + 1:02d}"
        if phase == 0 or not multi_phase:
            series_dir.mkdir(parents=True, exist_ok=True)
            series_dirs.append(series_dir)
        files: list[Path] = []
        for k in range(n_slices):
            instance = n_slices - k + (phase * n_slices if multi_phase else 0)
            ds = _mr_dataset(
                identity, geometry, timing, phase, k, series_index, instance, source(phase, k), multi_phase
            )
            path = series_dir / f"IM_{instance:05d}.dcm"
            write_dataset(ds, path)
            files.append(path)
            done += 1
            report(progress, done, total)
        phase_files.append(tuple(files))
    return WrittenSeries(series_dirs=tuple(series_dirs), phase_files=tuple(phase_files))

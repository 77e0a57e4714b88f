"""Contrast-enhanced CT variant: one venous phase (60 s after injection), CT Image Storage, HU.

Same anatomy and lesion as the MR phantom (breast shape unchanged; written with PatientPosition HFS).
Per voxel ``HU = HU0[label] + texture_hu[label] * T(x) + n``, n ~ N(0, 12 HU) drawn per slice from
(seed, slice); stored as unsigned 12-bit ``HU + 1024`` with RescaleSlope 1, RescaleIntercept -1024
(HU clipped to -1024..3071). Venous-phase HU0: air -1000, skin 40, fat -100, fibroglandular 45, muscle 60,
lung -850, heart (blood pool) 170; lesion persistent 55, plateau 85, wash-out 115 (the ordering of
perfusion carries over), necrosis 20.

Output below ``out_dir``: ``dicom/ct/IM_#####.dcm``, ``dicom/rtstruct/RS_00001.dcm`` and/or
``dicom/seg/SEG_00001.dcm`` (tumour, referencing the CT series), ``ground_truth/*.nrrd`` and
``phantom.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.uid import CTImageStorage

from oncohabitat.common.volume import Geometry
from oncohabitat.phantom.anatomy import Tissue
from oncohabitat.phantom.ct_masks import MASK_KINDS, write_rtstruct, write_seg
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
from oncohabitat.phantom.fields import SmoothField, size_of
from oncohabitat.phantom.ground_truth import (
    GroundTruthPaths,
    geometry_json,
    tumour_mask,
    write_json,
    write_label_volumes,
)
from oncohabitat.phantom.lesion import LesionParams, LesionTruth
from oncohabitat.phantom.presets import get_preset
from oncohabitat.phantom.progress import ProgressCallback, report
from oncohabitat.phantom.study import (
    METADATA_NAME,
    build_phantom_anatomy,
    check_seed,
    lesion_json,
    prepare_output_dir,
)

VENOUS_DELAY_S = 60.0
CT_NOISE_HU = 12.0
_INJECTION_OFFSET_S = 600.0
_CT_NOISE_STREAM, _CT_TEXTURE_STREAM = 0xC7, 4

#: (HU0, texture amplitude in HU) per tissue label, venous phase.
CT_HU: dict[Tissue, tuple[float, float]] = {
    Tissue.AIR: (-1000.0, 0.0),
    Tissue.SKIN: (40.0, 5.0),
    Tissue.BREAST_FAT: (-100.0, 10.0),
    Tissue.FIBROGLANDULAR: (45.0, 15.0),
    Tissue.CHEST_FAT: (-100.0, 10.0),
    Tissue.MUSCLE: (60.0, 5.0),
    Tissue.LUNG: (-850.0, 40.0),
    Tissue.HEART: (170.0, 5.0),
    Tissue.LESION_PERSISTENT: (55.0, 8.0),
    Tissue.LESION_PLATEAU: (85.0, 8.0),
    Tissue.LESION_WASHOUT: (115.0, 8.0),
    Tissue.NECROSIS: (20.0, 5.0),
}


@dataclass(frozen=True)
class PhantomCtStudy:
    """A generated CT study: CT files sorted inferior to superior, mask objects by kind, ground truth."""

    out_dir: Path
    ct_dir: Path
    ct_files: tuple[Path, ...]
    mask_files: dict[str, Path]
    geometry: Geometry
    size_xyz: tuple[int, int, int]
    ground_truth: GroundTruthPaths
    metadata_json: Path
    lesion: LesionTruth
    seed: int
    size: str
    study_instance_uid: str
    series_instance_uid: str


def ct_slice(labels: npt.NDArray[np.uint8], texture: SmoothField, k: int, seed: int) -> npt.NDArray[np.uint16]:
    """Stored values (HU + 1024, y, x) of slice ``k``."""
    hu0 = np.array([CT_HU[t][0] for t in Tissue], dtype=np.float32)
    amp = np.array([CT_HU[t][1] for t in Tissue], dtype=np.float32)
    lab = labels[k]
    noise = np.random.default_rng([seed, _CT_NOISE_STREAM, k]).standard_normal(lab.shape, dtype=np.float32)
    hu = hu0[lab] + amp[lab] * texture.plane(k) + np.float32(CT_NOISE_HU) * noise
    return np.clip(np.rint(hu) + 1024.0, 0, 4095).astype(np.uint16)


def _write_ct_series(
    ct_dir: Path,
    identity: StudyIdentity,
    geometry: Geometry,
    labels: npt.NDArray[np.uint8],
    seed: int,
    progress: ProgressCallback | None,
) -> tuple[Path, ...]:
    ct_dir.mkdir(parents=True)
    size = size_of(labels)
    texture = SmoothField(
        geometry, size, max(5.0, 2.0 * geometry.spacing[0]), np.random.default_rng([seed, _CT_TEXTURE_STREAM])
    )
    date = format_date(identity.study_date)
    injection = STUDY_START_S + _INJECTION_OFFSET_S
    acquisition = injection + VENOUS_DELAY_S
    n_slices = size[2]
    files = []
    for k in range(n_slices):
        instance = n_slices - k
        ds = new_dataset(CTImageStorage, identity.uid("ct-image", k))
        apply_patient_and_study(ds, identity)
        ds.Modality = "CT"
        ds.SeriesInstanceUID = identity.uid("ct-series")
        ds.SeriesNumber = 1
        ds.SeriesDescription = "CT chest venous (synthetic phantom)"
        ds.SeriesDate, ds.SeriesTime = date, format_time(acquisition)
        ds.BodyPartExamined = "CHEST"
        ds.PatientPosition = "HFS"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = instance
        ds.AcquisitionNumber = 1
        ds.AcquisitionDate, ds.AcquisitionTime = date, format_time(acquisition)
        ds.ContentDate, ds.ContentTime = date, format_time(acquisition)
        apply_plane(ds, geometry, k)
        apply_pixels(ds, ct_slice(labels, texture, k, seed), bits_stored=12)
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.KVP = "120"
        ds.ConvolutionKernel = "STANDARD"
        ds.ReconstructionDiameter = f"{size[0] * geometry.spacing[0]:.6g}"
        ds.GantryDetectorTilt = "0"
        ds.ContrastBolusAgent = "Iohexol 350 mgI/mL"
        ds.ContrastBolusRoute = "IV"
        ds.ContrastBolusVolume = "90"
        ds.ContrastBolusStartTime = format_time(injection)
        path = ct_dir / f"IM_{instance:05d}.dcm"
        write_dataset(ds, path)
        files.append(path)
        report(progress, k + 1, n_slices)
    return tuple(files)


def generate_ct_study(
    out_dir: Path,
    seed: int = 0,
    size: str = "small",
    mask: str = "rtstruct",
    necrosis: bool = False,
    *,
    lesion_params: LesionParams | None = None,
    progress: ProgressCallback | None = None,
) -> PhantomCtStudy:
    """Write a venous-phase CT study with the tumour as RTSTRUCT, SEG or ``both`` to ``out_dir``."""
    check_seed(seed)
    preset = get_preset(size)
    if mask not in MASK_KINDS:
        raise PhantomError(f"unknown mask kind {mask!r}; choose one of {', '.join(MASK_KINDS)}")
    params = lesion_params if lesion_params is not None else LesionParams(necrosis=necrosis)
    params.validate()
    out_dir = Path(out_dir)
    prepare_output_dir(out_dir)
    anatomy = build_phantom_anatomy(preset, seed, params)
    if anatomy.lesion is None:
        raise PhantomError("the CT phantom needs a lesion")
    identity = StudyIdentity(
        seed=seed, uid_key=f"ct/{seed}/{size}/{params!r}", study_description="CT CHEST (synthetic phantom)"
    )
    ct_dir = out_dir / "dicom" / "ct"
    ct_files = _write_ct_series(ct_dir, identity, anatomy.geometry, anatomy.labels, seed, progress)
    tumour = tumour_mask(anatomy.labels).astype(bool)
    mask_files: dict[str, Path] = {}
    if mask in ("rtstruct", "both"):
        mask_files["rtstruct"] = write_rtstruct(ct_dir, out_dir / "dicom" / "rtstruct", identity, tumour)
    if mask in ("seg", "both"):
        mask_files["seg"] = write_seg(ct_files, out_dir / "dicom" / "seg", identity, tumour)
    ground_truth = write_label_volumes(out_dir / "ground_truth", anatomy.geometry, anatomy.labels)
    metadata = out_dir / METADATA_NAME
    write_json(
        metadata,
        {
            "format_version": 1,
            "kind": "ct-venous",
            "seed": seed,
            "size": size,
            "venous_delay_s": VENOUS_DELAY_S,
            "geometry": geometry_json(anatomy.geometry, anatomy.size_xyz),
            "ct_dir": ct_dir.relative_to(out_dir).as_posix(),
            "mask_files": {k: v.relative_to(out_dir).as_posix() for k, v in mask_files.items()},
            "ground_truth": ground_truth.relative_to(out_dir),
            "lesion": lesion_json(anatomy.lesion),
            "hu": {t.name.lower(): {"hu0": v[0], "texture_hu": v[1]} for t, v in CT_HU.items()},
            "noise_hu": CT_NOISE_HU,
            "study_instance_uid": identity.study_uid,
        },
    )
    return PhantomCtStudy(
        out_dir=out_dir,
        ct_dir=ct_dir,
        ct_files=ct_files,
        mask_files=mask_files,
        geometry=anatomy.geometry,
        size_xyz=anatomy.size_xyz,
        ground_truth=ground_truth,
        metadata_json=metadata,
        lesion=anatomy.lesion,
        seed=seed,
        size=size,
        study_instance_uid=identity.study_uid,
        series_instance_uid=identity.uid("ct-series"),
    )

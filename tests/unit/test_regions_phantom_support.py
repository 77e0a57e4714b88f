"""Helpers shared by the regions tests (phantom study -> phases / Study message), and their own checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

from oncohabitat.common.codec import VolumeCodec
from oncohabitat.common.phases import PhaseInput
from oncohabitat.common.volume import Geometry
from oncohabitat.dicomio import load_series
from oncohabitat.phantom import PhantomStudy, generate_study
from oncohabitat.v1 import common_pb2


@dataclass(frozen=True)
class LoadedPhantom:
    """A phantom study read back from its DICOM files, with its ground truth (z, y, x arrays)."""

    study: PhantomStudy
    phases: list[PhaseInput]
    tumour: npt.NDArray[np.bool_]
    compartments: npt.NDArray[np.uint8]
    breast: npt.NDArray[np.bool_]
    tissue: npt.NDArray[np.uint8]


def _read_nrrd(path: Path) -> npt.NDArray[np.uint8]:
    return np.asarray(sitk.GetArrayFromImage(sitk.ReadImage(str(path))), dtype=np.uint8)


def load_phantom(out_dir: Path, size: str, seed: int = 0) -> LoadedPhantom:
    """Generate a phantom study in ``out_dir`` and load every phase with the platform's DICOM reader."""
    study = generate_study(out_dir, size=size, seed=seed)
    phases = []
    for index, files in enumerate(study.phase_files):
        image = load_series(files).image
        phases.append(
            PhaseInput(
                "pre" if index == 0 else "post",
                index,
                study.phase_times_s[index],
                sitk.GetArrayFromImage(image),
                Geometry.of(image),
            )
        )
    truth = study.ground_truth
    return LoadedPhantom(
        study=study,
        phases=phases,
        tumour=_read_nrrd(truth.tumour_mask) > 0,
        compartments=_read_nrrd(truth.compartments),
        breast=_read_nrrd(truth.breast_mask) > 0,
        tissue=_read_nrrd(truth.tissue_labels),
    )


def study_message(phantom: LoadedPhantom, codec: VolumeCodec, phases: list[int] | None = None) -> common_pb2.Study:
    """The Study message of a loaded phantom (all phases, or the listed indices)."""
    study = common_pb2.Study(study_key="phantom", modality="MR")
    for phase in phantom.phases:
        if phases is not None and phase.index not in phases:
            continue
        role = common_pb2.PHASE_ROLE_PRE_CONTRAST if phase.role == "pre" else common_pb2.PHASE_ROLE_POST_CONTRAST
        study.phases.add(
            role=role,
            index=phase.index,
            time_offset_s=phase.time_s,
            series_key=f"series-{phase.index}",
            volume=codec.encode_array(phase.array, phase.geometry),
        )
    return study


def mask_message(mask: npt.NDArray[np.generic], geometry: Geometry, codec: VolumeCodec) -> common_pb2.LabelMap:
    """A tumour LabelMap message."""
    return common_pb2.LabelMap(
        volume=codec.encode_array(np.asarray(mask, dtype=np.uint8), geometry),
        labels=[common_pb2.Label(value=1, name="tumour")],
    )


def test_loaded_phantom_phases_share_the_ground_truth_grid(tmp_path: Path) -> None:
    phantom = load_phantom(tmp_path / "small", "small")
    assert [p.index for p in phantom.phases] == list(range(len(phantom.study.phase_times_s)))
    assert [p.time_s for p in phantom.phases] == list(phantom.study.phase_times_s)
    for phase in phantom.phases:
        assert phase.array.shape == phantom.tumour.shape
        assert phase.geometry.spacing == phantom.study.geometry.spacing
    assert phantom.tumour.sum() == phantom.study.lesion.n_voxels  # type: ignore[union-attr]

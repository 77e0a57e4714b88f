"""Size presets: matrix, voxel spacing and DCE timing of the three phantom sizes.

``small`` is for unit tests, ``ispy`` mimics I-SPY1 (256 x 256 x 60, 1 pre + 3 post phases) and ``duke``
mimics Duke-Breast-Cancer-MRI (512 x 512 x 170, 1 pre + 3 post phases). All phantoms are axial.

Timing convention (seconds): the pre-contrast phase is acquired at t = 0, contrast is injected at
``injection_time_s`` and post-contrast phase k is acquired at ``injection_time_s + post_times_s[k]``
(the time written to TriggerTime and AcquisitionTime is that of the k-space centre of the phase).
"""

from __future__ import annotations

from dataclasses import dataclass

from oncohabitat.common.volume import Geometry
from oncohabitat.phantom.errors import PhantomError

#: Reference in-plane field of view (mm) the anatomy is drawn for; other fields of view scale it.
REFERENCE_FOV_MM = 340.0

#: Patient coordinate (LPS, mm) of the centre of the field of view: an arbitrary table position so that
#: origins are not trivially zero.
FOV_CENTRE_LPS_MM = (2.5, 35.0, -80.0)


@dataclass(frozen=True)
class SizePreset:
    """Matrix (x, y, z voxels), spacing (x, y, z mm) and DCE timing (s) of one phantom size."""

    name: str
    size_xyz: tuple[int, int, int]
    spacing_xyz_mm: tuple[float, float, float]
    injection_time_s: float
    post_times_s: tuple[float, ...]

    @property
    def n_phases(self) -> int:
        """Number of phases (1 pre-contrast + post-contrast)."""
        return 1 + len(self.post_times_s)

    @property
    def phase_times_s(self) -> tuple[float, ...]:
        """Acquisition time of each phase relative to the pre-contrast acquisition (s)."""
        return (0.0, *(self.injection_time_s + t for t in self.post_times_s))

    @property
    def time_since_injection_s(self) -> tuple[float, ...]:
        """Time of each phase relative to contrast injection (s); negative for the pre-contrast phase."""
        return tuple(t - self.injection_time_s for t in self.phase_times_s)

    @property
    def anatomy_scale(self) -> float:
        """Factor applied to the reference anatomy so it fills the in-plane field of view."""
        fov = min(self.size_xyz[0] * self.spacing_xyz_mm[0], self.size_xyz[1] * self.spacing_xyz_mm[1])
        return fov / REFERENCE_FOV_MM

    def geometry(self) -> Geometry:
        """Axial geometry centred on :data:`FOV_CENTRE_LPS_MM`."""
        return Geometry.axial_centred(self.size_xyz, self.spacing_xyz_mm, FOV_CENTRE_LPS_MM)


SIZES: dict[str, SizePreset] = {
    "small": SizePreset("small", (64, 64, 32), (3.0, 3.0, 3.0), 60.0, (60.0, 120.0, 180.0, 240.0, 300.0)),
    "ispy": SizePreset("ispy", (256, 256, 60), (1.25, 1.25, 2.5), 60.0, (150.0, 300.0, 450.0)),
    "duke": SizePreset("duke", (512, 512, 170), (0.7, 0.7, 1.0), 60.0, (90.0, 180.0, 270.0)),
}


def get_preset(name: str) -> SizePreset:
    """The preset called ``name``; :class:`PhantomError` for unknown sizes."""
    try:
        return SIZES[name]
    except KeyError:
        raise PhantomError(f"unknown phantom size {name!r}; choose one of {', '.join(SIZES)}") from None

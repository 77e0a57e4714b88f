"""MR signal of the DCE phantom: tissue baselines, texture, bias field, enhancement and Rician noise.

Per voxel, phase p at time t_p after injection (s)::

    S = | S0[label] * (1 + texture_amp[label] * T(x)) * B(x) * (1 + E_label(t_p)) + n1 + i n2 |

with ``T`` a smooth random texture field (cell 5 mm or two in-plane voxels), ``B`` a smooth multiplicative
bias field (coil sensitivity: ``1 + 0.08 * field(cell 90 mm) - 0.10 * y / (FOV/2)``, brighter anteriorly,
clipped to 0.75-1.3), ``E`` the curves of :mod:`.kinetics` and n1, n2 ~ N(0, sigma) (Rician magnitude
noise, sigma = 6). Values are rounded and clipped to 0-4095 (12-bit unsigned). The static part (baseline x
texture x bias) is stored once as float32; each phase is then produced slice by slice, with noise drawn
from a generator seeded by (seed, phase, slice), so output never depends on the order of generation.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from oncohabitat.common.volume import Geometry
from oncohabitat.phantom.anatomy import BodyShape
from oncohabitat.phantom.fields import SmoothField, local_axes, size_of
from oncohabitat.phantom.kinetics import baseline_lut, enhancement_lut, texture_lut

NOISE_SIGMA = 6.0
MAX_STORED_VALUE = 4095
_NOISE_STREAM = 0xDCE


def static_signal(
    geometry: Geometry,
    shape: BodyShape,
    labels: npt.NDArray[np.uint8],
    rng: np.random.Generator,
) -> npt.NDArray[np.float32]:
    """Noise-free pre-contrast signal (z, y, x) float32: baseline x texture x bias field."""
    size = size_of(labels)
    texture = SmoothField(geometry, size, max(5.0, 2.0 * geometry.spacing[0]), rng)
    bias = SmoothField(geometry, size, 90.0, rng)
    s0, amp = baseline_lut(), texture_lut()
    _, y_axis, _ = local_axes(geometry, size)
    half_fov = size[1] * geometry.spacing[1] / 2.0
    gradient = (-0.10 * y_axis / half_fov).astype(np.float32)[:, np.newaxis]
    out = np.empty(labels.shape, dtype=np.float32)
    for k in range(size[2]):
        lab = labels[k]
        coil = np.clip(1.0 + 0.08 * bias.plane(k) + gradient, 0.75, 1.3)
        out[k] = s0[lab] * (1.0 + amp[lab] * texture.plane(k)) * coil
    return out


def phase_slice(
    static: npt.NDArray[np.float32],
    labels: npt.NDArray[np.uint8],
    k: int,
    phase: int,
    t_since_injection_s: float,
    seed: int,
    sigma: float = NOISE_SIGMA,
) -> npt.NDArray[np.uint16]:
    """Stored pixel values (y, x) uint16 of slice ``k`` in phase ``phase`` (0 = pre-contrast)."""
    signal = static[k] * enhancement_lut(t_since_injection_s)[labels[k]]
    noise = np.random.default_rng([seed, _NOISE_STREAM, phase, k])
    real = signal + noise.standard_normal(signal.shape, dtype=np.float32) * np.float32(sigma)
    imag = noise.standard_normal(signal.shape, dtype=np.float32) * np.float32(sigma)
    magnitude = np.sqrt(real * real + imag * imag)
    return np.clip(np.rint(magnitude), 0, MAX_STORED_VALUE).astype(np.uint16)

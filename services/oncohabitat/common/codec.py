"""Exact conversion between numpy / SimpleITK volumes and the ``Volume`` proto.

The imaging model (array + :class:`~oncohabitat.common.volume.Geometry`, axis order and units) is
:mod:`oncohabitat.common.volume`. Voxels are sent little-endian; a round trip is bit-for-bit (values, dtype and
geometry).

Arrays above ``inline_limit_bytes`` go to the :class:`~oncohabitat.common.blobstore.BlobStore` and travel as a
reference, so no message approaches gRPC's size limits.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from oncohabitat.common.blobstore import BlobStore
from oncohabitat.common.errors import InvalidInputError
from oncohabitat.common.volume import Geometry, Volume
from oncohabitat.v1 import common_pb2

if TYPE_CHECKING:
    # imported where an image is converted: services that only pass arrays (scoring, the listener) do not
    # carry SimpleITK (264 MB; deploy/README.md)
    import SimpleITK as sitk

DEFAULT_INLINE_LIMIT_BYTES = 1024 * 1024

_DTYPES: dict[common_pb2.DType, np.dtype] = {
    common_pb2.DTYPE_UINT8: np.dtype("<u1"),
    common_pb2.DTYPE_INT8: np.dtype("<i1"),
    common_pb2.DTYPE_UINT16: np.dtype("<u2"),
    common_pb2.DTYPE_INT16: np.dtype("<i2"),
    common_pb2.DTYPE_UINT32: np.dtype("<u4"),
    common_pb2.DTYPE_INT32: np.dtype("<i4"),
    common_pb2.DTYPE_INT64: np.dtype("<i8"),
    common_pb2.DTYPE_FLOAT32: np.dtype("<f4"),
    common_pb2.DTYPE_FLOAT64: np.dtype("<f8"),
}
_CODES = {dtype.newbyteorder("="): code for code, dtype in _DTYPES.items()}
#: Largest voxel count a decoded volume may claim (2**31: beyond it, sizes overflow int32 in ITK and numpy indexing).
MAX_VOXELS = 2**31 - 1


def _validated_geometry(volume: common_pb2.Volume) -> tuple[tuple[int, int, int], Geometry]:
    if len(volume.shape) != 3 or any(n == 0 for n in volume.shape):
        raise InvalidInputError("VOLUME_SHAPE_INVALID", "volume shape must have 3 positive entries (z, y, x)", "shape")
    if math.prod(int(n) for n in volume.shape) > MAX_VOXELS:
        raise InvalidInputError("VOLUME_SHAPE_INVALID", f"volume shape exceeds {MAX_VOXELS} voxels", "shape")
    if len(volume.spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in volume.spacing):
        raise InvalidInputError(
            "VOLUME_SPACING_INVALID", "volume spacing must be 3 finite positive values (mm)", "spacing"
        )
    if len(volume.origin) != 3 or not all(math.isfinite(o) for o in volume.origin):
        raise InvalidInputError("VOLUME_ORIGIN_INVALID", "volume origin must have 3 finite values (mm)", "origin")
    if len(volume.direction) != 9 or not all(math.isfinite(d) for d in volume.direction):
        raise InvalidInputError("VOLUME_DIRECTION_INVALID", "volume direction must have 9 finite values", "direction")
    if abs(float(np.linalg.det(np.asarray(volume.direction, dtype=np.float64).reshape(3, 3)))) < 1e-6:
        raise InvalidInputError(
            "VOLUME_DIRECTION_INVALID", "volume direction must be an invertible matrix (not zero)", "direction"
        )
    z, y, x = (int(n) for n in volume.shape)
    geometry = Geometry(
        spacing=(volume.spacing[0], volume.spacing[1], volume.spacing[2]),
        origin=(volume.origin[0], volume.origin[1], volume.origin[2]),
        direction=tuple(volume.direction),
    )
    return (z, y, x), geometry


class VolumeCodec:
    """Encode/decode volumes; large payloads go through ``blobs`` when one is configured."""

    def __init__(self, blobs: BlobStore | None = None, inline_limit_bytes: int = DEFAULT_INLINE_LIMIT_BYTES) -> None:
        self.blobs = blobs
        self.inline_limit_bytes = inline_limit_bytes

    def encode_array(self, array: npt.NDArray[np.generic], geometry: Geometry) -> common_pb2.Volume:
        """(z, y, x) array + geometry -> Volume."""
        if array.ndim != 3:
            raise InvalidInputError("VOLUME_SHAPE_INVALID", "volume must be 3D (z, y, x)", "shape")
        code = _CODES.get(array.dtype.newbyteorder("="))
        if code is None:
            raise InvalidInputError("VOLUME_DTYPE_UNSUPPORTED", f"dtype {array.dtype} is not supported", "dtype")
        raw = np.ascontiguousarray(array, dtype=_DTYPES[code]).tobytes()
        volume = common_pb2.Volume(
            shape=list(array.shape),
            spacing=list(geometry.spacing),
            origin=list(geometry.origin),
            direction=list(geometry.direction),
            dtype=code,
        )
        if self.blobs is not None and len(raw) > self.inline_limit_bytes:
            volume.blob.sha256 = self.blobs.put(raw)
            volume.blob.size_bytes = len(raw)
        else:
            volume.data = raw
        return volume

    def decode_array(self, volume: common_pb2.Volume) -> tuple[npt.NDArray[np.generic], Geometry]:
        """Volume -> ((z, y, x) array in native byte order, geometry). Validates size and dtype."""
        shape, geometry = _validated_geometry(volume)
        dtype = _DTYPES.get(volume.dtype)
        if dtype is None:
            raise InvalidInputError("VOLUME_DTYPE_UNSUPPORTED", "volume dtype is missing or unknown", "dtype")
        payload = volume.WhichOneof("payload")
        if payload == "blob":
            if self.blobs is None:
                raise InvalidInputError("BLOB_STORE_UNAVAILABLE", "this service has no study store", "blob")
            raw = self.blobs.get(volume.blob.sha256)
        elif payload == "data":
            raw = volume.data
        else:
            raise InvalidInputError("VOLUME_DATA_MISSING", "volume carries no voxel data", "data")
        expected = math.prod(shape) * dtype.itemsize
        if len(raw) != expected:
            raise InvalidInputError(
                "VOLUME_SIZE_MISMATCH", f"volume data has {len(raw)} bytes, shape needs {expected}", "data"
            )
        array = np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=True)
        return array, geometry

    def encode_volume(self, volume: Volume) -> common_pb2.Volume:
        """:class:`~oncohabitat.common.volume.Volume` -> Volume proto."""
        return self.encode_array(volume.array, volume.geometry)

    def decode_volume(self, volume: common_pb2.Volume) -> Volume:
        """Volume proto -> :class:`~oncohabitat.common.volume.Volume` (validated, native byte order)."""
        array, geometry = self.decode_array(volume)
        return Volume(array, geometry)

    def encode_image(self, image: sitk.Image) -> common_pb2.Volume:
        """SimpleITK image (scalar, 3D) -> Volume."""
        import SimpleITK as sitk

        if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
            raise InvalidInputError("VOLUME_SHAPE_INVALID", "only scalar 3D images are supported", "shape")
        return self.encode_array(sitk.GetArrayViewFromImage(image), Geometry.of(image))

    def decode_image(self, volume: common_pb2.Volume) -> sitk.Image:
        """Volume -> SimpleITK image with the exact geometry."""
        import SimpleITK as sitk

        array, geometry = self.decode_array(volume)
        return geometry.apply(sitk.GetImageFromArray(array, isVector=False))

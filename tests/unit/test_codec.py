"""Volume codec: numpy/SimpleITK <-> proto round trips keep values and geometry bit-for-bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from oncohabitat.common.blobstore import BlobStore
from oncohabitat.common.codec import VolumeCodec
from oncohabitat.common.errors import InvalidInputError, NotFoundError
from oncohabitat.common.volume import Geometry
from oncohabitat.v1 import common_pb2

ODD_GEOMETRY = Geometry(
    spacing=(0.703125, 0.703125, 1.48148),
    origin=(-170.123456789, 12.5, -33.000000001),
    # a rotated, non-axis-aligned orthonormal direction (columns = axes)
    direction=tuple(
        np.linalg.qr(np.array([[0.9, 0.1, 0.2], [-0.1, 0.8, 0.3], [0.05, -0.2, 0.95]]))[0].flatten().tolist()
    ),
)


@pytest.mark.parametrize(
    "dtype", ["uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "float32", "float64"]
)
def test_array_round_trip_is_bit_exact(dtype: str) -> None:
    rng = np.random.default_rng(7)
    info = np.finfo(dtype) if dtype.startswith("float") else np.iinfo(dtype)
    array = rng.uniform(max(info.min, -1e6), min(info.max, 1e6), size=(5, 7, 11)).astype(dtype)
    codec = VolumeCodec()
    decoded, geometry = codec.decode_array(codec.encode_array(array, ODD_GEOMETRY))
    assert decoded.dtype == array.dtype
    assert decoded.shape == (5, 7, 11)
    assert decoded.tobytes() == array.tobytes()
    assert geometry == ODD_GEOMETRY


def test_float_specials_survive() -> None:
    array = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45, 3.4e38], dtype=np.float32).reshape(1, 2, 3)
    codec = VolumeCodec()
    decoded, _ = codec.decode_array(codec.encode_array(array, Geometry()))
    assert decoded.tobytes() == array.tobytes()


def test_simpleitk_round_trip_on_real_ct(sts_ct_dir: Path) -> None:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(sts_ct_dir / "image")))
    image = reader.Execute()
    codec = VolumeCodec()
    volume = codec.encode_image(image)
    back = codec.decode_image(common_pb2.Volume.FromString(volume.SerializeToString()))
    assert back.GetSize() == image.GetSize()
    assert back.GetSpacing() == image.GetSpacing()
    assert back.GetOrigin() == image.GetOrigin()
    assert back.GetDirection() == image.GetDirection()
    assert back.GetPixelID() == image.GetPixelID()
    assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(image))


def test_large_arrays_travel_by_reference(tmp_path: Path) -> None:
    codec = VolumeCodec(BlobStore(tmp_path), inline_limit_bytes=1024)
    array = np.arange(64 * 64 * 8, dtype=np.int16).reshape(8, 64, 64)
    volume = codec.encode_array(array, Geometry())
    assert volume.WhichOneof("payload") == "blob"
    assert volume.ByteSize() < 300
    decoded, _ = codec.decode_array(volume)
    assert np.array_equal(decoded, array)
    small = codec.encode_array(array[:1, :4, :4], Geometry())
    assert small.WhichOneof("payload") == "data"


def test_corrupted_or_missing_blob_is_refused(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    codec = VolumeCodec(store, inline_limit_bytes=0)
    volume = codec.encode_array(np.ones((2, 2, 2), np.float32), Geometry())
    blob_path = tmp_path / volume.blob.sha256[:2] / volume.blob.sha256
    blob_path.write_bytes(b"x" * 32)
    with pytest.raises(InvalidInputError) as corrupt:
        codec.decode_array(volume)
    assert corrupt.value.reason == "BLOB_CORRUPT"
    blob_path.unlink()
    with pytest.raises(NotFoundError):
        codec.decode_array(volume)
    volume.blob.sha256 = "../../etc/passwd"
    with pytest.raises(InvalidInputError) as bad_ref:
        codec.decode_array(volume)
    assert bad_ref.value.reason == "BLOB_REF_INVALID"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda v: v.shape.pop(), "VOLUME_SHAPE_INVALID"),
        (lambda v: v.spacing.__setitem__(0, 0.0), "VOLUME_SPACING_INVALID"),
        (lambda v: v.direction.pop(), "VOLUME_DIRECTION_INVALID"),
        (lambda v: setattr(v, "data", b"\x00" * 3), "VOLUME_SIZE_MISMATCH"),
        (lambda v: setattr(v, "dtype", common_pb2.DTYPE_UNSPECIFIED), "VOLUME_DTYPE_UNSUPPORTED"),
        (lambda v: v.ClearField("data"), "VOLUME_DATA_MISSING"),
    ],
)
def test_malformed_volumes_raise_invalid_input(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    codec = VolumeCodec()
    volume = codec.encode_array(np.zeros((2, 3, 4), np.uint8), Geometry())
    mutate(volume)
    with pytest.raises(InvalidInputError) as excinfo:
        codec.decode_array(volume)
    assert excinfo.value.reason == reason

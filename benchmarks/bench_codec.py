"""Volume codec throughput on an I-SPY-sized phase (60 x 256 x 256 int16) vs a plain numpy copy."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from benchmarks.runner import Measurement, best_of, register
from oncohabitat.common.blobstore import BlobStore
from oncohabitat.common.codec import VolumeCodec
from oncohabitat.common.volume import Geometry
from oncohabitat.v1 import common_pb2


@register("codec")
def bench_codec() -> list[Measurement]:
    """Encode+serialise+parse+decode, inline and through the study store, against ``array.copy()``."""
    array = np.random.default_rng(0).integers(0, 4000, size=(60, 256, 256), dtype=np.int16)
    mib = array.nbytes / 2**20
    baseline = best_of(5, array.copy)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, codec in (
            ("inline", VolumeCodec(None)),
            ("study-store", VolumeCodec(BlobStore(Path(tmp)), inline_limit_bytes=0)),
        ):

            def round_trip(codec: VolumeCodec = codec) -> None:
                wire = codec.encode_array(array, Geometry()).SerializeToString()
                codec.decode_array(common_pb2.Volume.FromString(wire))

            seconds = best_of(5, round_trip)
            rows.append(
                Measurement("codec", f"round trip {label} ({mib:.1f} MiB)", seconds, "s", baseline, "numpy copy")
            )
    return rows

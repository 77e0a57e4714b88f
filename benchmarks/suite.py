"""The registered benchmarks (each module registers itself on import)."""

from benchmarks import bench_codec, bench_listener, bench_regions, bench_segmentation  # noqa: F401

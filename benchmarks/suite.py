"""The registered benchmarks (each module registers itself on import)."""

from benchmarks import bench_codec  # noqa: F401

"""The registered benchmarks (each module registers itself on import)."""

from benchmarks import (  # noqa: F401
    bench_codec,
    bench_features,
    bench_listener,
    bench_pipeline,
    bench_regions,
    bench_scoring,
    bench_segmentation,
)

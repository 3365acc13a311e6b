"""`make bench`: every installed runtime side by side, measured one way, with tables and plots.

Latency is batch 1 after warm-up, with the engines interleaved run by run inside one process so
machine drift hits them alike. Each runtime's own tool (benchmark_app, litert-benchmark) times
the same files, taking turns with our timing, as a cross-check. Accuracy comes from the deploy pipeline's own validation; the camera loop is run on a
generated video; the pipeline's stage times come from the run folders' records.
"""
from __future__ import annotations

from pipeline.bench.engines import interleaved_latency  # noqa: F401
from pipeline.bench.run import BenchConfig, bench_targets, run_bench, valid_models  # noqa: F401

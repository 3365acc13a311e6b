"""Runners: a model artifact loaded in its target's own runtime, classifying batches. One module per runtime, behind
one registry (RUNTIMES) that host and board alike load through: a caller names a runtime, never builds or rewrites
a runner of its own.

A runner takes what its artifact takes: NCHW float32 tensors (`Preprocess.__call__`), or the camera's
pixels, NHWC uint8 BGR (`Preprocess.pixels`), for an artifact that holds the rest of its preprocessing.

Device side: imports numpy and, inside functions, the one runtime it needs.
"""
from __future__ import annotations

from pathlib import Path

from edge.errors import MissingRuntime, UserError  # noqa: F401  (MissingRuntime: re-exported)
from edge.runners import litert, onnxruntime, openvino, tensorrt
from edge.runners.base import PIXELS_INPUT, InFlight, Runner, Runtime, as_input, require  # noqa: F401  (re-exported)
from edge.runners.litert import LiteRTRunner, dequantize, litert_kernels, quantize_input  # noqa: F401
from edge.runners.onnxruntime import OnnxRuntimeRunner  # noqa: F401
from edge.runners.openvino import OpenVINORunner, openvino_config  # noqa: F401

# The one registry of runtimes, by the name a target's `device_runtime` and a bundle's config.json give.
RUNTIMES: dict[str, Runtime] = {r.name: r for r in (
    openvino.RUNTIME, onnxruntime.RUNTIME, litert.RUNTIME, tensorrt.RUNTIME, onnxruntime.TENSORRT_REFERENCE)}


def runtime(name: str) -> Runtime:
    if name not in RUNTIMES:
        raise UserError(f"unknown runtime {name!r}; use one of {', '.join(RUNTIMES)}")
    return RUNTIMES[name]


def load_runner(name: str, artifact: Path, threads: int = 0, precision: str = "f32", cache_dir: Path | None = None,
                unsaturated_int8: bool = False) -> Runner:
    """The runner for a runtime name (a target's `device_runtime`, a bundle's "runtime"). `unsaturated_int8`: int8 sums
    that never saturate, as a board whose kernels never do makes them (for judging; slower)."""
    return runtime(name).load(artifact, threads, precision, cache_dir, unsaturated_int8)

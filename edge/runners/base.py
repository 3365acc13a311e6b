"""What every runner is: the Runner interface, a runtime's entry in the registry (Runtime), the in-flight interface,
the input a runner takes, and the one-line error for a missing runtime. Each runtime's module builds on this one;
the registry (edge.runners) imports them. Device side: numpy.
"""
from __future__ import annotations

import importlib
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Callable

import numpy as np

from edge.errors import MissingRuntime, UserError


def require(module: str, pip_name: str, who: str):
    """Import `module` or fail with a one-line message naming the package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingRuntime(f"{who} needs the Python package {pip_name!r} ({e}); install it with: pip install {pip_name}",
                             module.split(".")[0]) from None


PIXELS_INPUT = "pixels"  # the input name of an ONNX artifact that takes the camera's pixels (targets.onnx)


def as_input(batch: np.ndarray, dtype) -> np.ndarray:
    """`batch` as a contiguous array of the artifact's input dtype. Pixels (uint8) may widen to a float input
    (Jetson's); a float tensor never narrows to a uint8 input: that is normalised data fed to a pixel artifact."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8 and batch.dtype != np.uint8:
        raise ValueError(f"this artifact takes the camera's uint8 pixels (Preprocess.pixels), not {batch.dtype} tensors")
    return np.ascontiguousarray(batch, dtype=dtype)


class Runner:
    """A model loaded in its runtime: `infer` takes a batch of what the artifact takes (`takes_pixels`: NHWC
    uint8 BGR pixels, else NCHW float32 tensors) and returns logits (N, classes)."""

    runtime: str  # e.g. "openvino 2026.4 (CPU, f32)"
    threads: int
    takes_pixels: bool = False
    pixels_by = "the artifact"  # what turns pixels into the model's input when takes_pixels

    def infer(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def prepare(self, batch: np.ndarray):
        """What `run` takes for `batch`. A runner that turns the camera's pixels into its model's input itself
        (LiteRT's table) does that here, so the camera program can do it on its capture thread, overlapping the
        previous frame's inference; the others take `batch` as it is."""
        return batch

    def run(self, prepared) -> np.ndarray:
        """Logits for `prepare(batch)`: the camera program's inference call. `infer(batch)` is `run(prepare(batch))`."""
        return self.infer(prepared)

    def executed_precisions(self) -> dict[str, int]:
        """Compute layers per precision the runtime actually executes; {} where it does not say."""
        return {}

    def accept_pixels(self, preprocess) -> None:
        """Take the camera's pixels from now on: nothing to do for an artifact that holds its preprocessing."""
        if not self.takes_pixels:
            raise UserError(f"{self.runtime}: this artifact takes normalised tensors, not pixels; rebuild the bundle with make deploy")


class InFlight:
    """Up to `depth` inferences at once; `submit(x)` -> Future of the logits (1, classes)."""

    depth: int
    runtime: str

    def submit(self, batch: np.ndarray) -> Future:
        raise NotImplementedError

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Runtime:
    """One runtime in the registry. `load(artifact, threads, precision, cache_dir, exact)` -> Runner, where `exact`
    asks for int8 sums that never saturate (edge.isa.must_not_saturate; a runtime whose sums never do ignores it).
    In throughput mode (edge.inflight) a runtime keeps several inferences in flight through `own_queue(artifact,
    threads, precision, depth)` where it has one, else through lanes of its runners; `lanes=False`: one at a time only."""

    name: str
    load: Callable[..., Runner]
    own_queue: Callable[..., InFlight] | None = None
    lanes: bool = True

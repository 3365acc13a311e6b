"""OpenVINO's runner: an IR compiled for the CPU, one request at a time (latency) or its own queue (throughput).
Device side: numpy and, inside functions, openvino."""
from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

import numpy as np

from edge.runners.base import InFlight, Runner, Runtime, as_input, require


def openvino_config(threads: int = 0, precision: str = "f32", unsaturated_int8: bool = False) -> dict:
    """The CPU plugin's compile properties for our runner (and for benchmark_app, to time the same thing)."""
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if precision:
        # Without this hint OpenVINO silently runs "fp32" in bf16 on CPUs that support it.
        config["INFERENCE_PRECISION_HINT"] = precision
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    if unsaturated_int8:
        config["LP_TRANSFORMS_MODE"] = "NO"  # the CPU plugin's own switch (ov::intel_cpu::lp_transforms_mode)
    return config


class OpenVINORunner(Runner):
    """An IR compiled for the CPU at batch 1; `precision` is the inference precision hint."""

    def __init__(self, artifact: Path, threads: int = 0, precision: str = "f32", device: str = "CPU", unsaturated_int8: bool = False):
        """`unsaturated_int8`: the CPU plugin's low-precision transformations off, so each FakeQuantize rounds a float tensor
        to its int8 grid and the layers sum in f32: int8 sums that never saturate on any CPU, as a board whose int8
        kernels never saturate computes them, to within float rounding (several times slower; for validation only)."""
        ov = require("openvino", "openvino", "the OpenVINO runner")
        core = ov.Core()
        config = openvino_config(threads, precision, unsaturated_int8)
        self.compiled = core.compile_model(core.read_model(str(artifact)), device, config)
        self.request = self.compiled.create_infer_request()
        self._tensor = ov.Tensor  # wraps our array without a copy (shared_memory)
        self.input_dtype = self.compiled.input(0).get_element_type().to_dtype()
        self.takes_pixels = self.input_dtype == np.uint8
        self.threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        actual = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        # The precision hint is what the layers left in float run in: an int8 model's label says int8 first.
        executed = self.executed_precisions()
        precision_label = f"int8, {actual} elsewhere" if {"u8", "i8"} & set(executed) else actual
        self.runtime = f"openvino {ov.get_version().split('-')[0]} ({device}, {precision_label})" + (
            "; unsaturated int8 sums (low-precision transformations off)" if unsaturated_int8 else "")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = as_input(batch, self.input_dtype)
        if not batch.flags.writeable:  # a shared tensor needs writable memory (a read-only mmap, np.frombuffer)
            batch = batch.copy()
        outs = []
        for i in range(batch.shape[0]):  # the IR has a static batch of 1, as the camera loop uses it
            # The request reads our array in place and infer's outputs are views, not copies: our only cost over
            # the runtime's bare call is one output copy (paired on Lite0 int8, 6.55 ms on a 2-core AVX2 machine:
            # 0.15 ms over the bare call, against 0.25 for infer({0: x}, share_inputs=True)). The tensor is kept,
            # so the request never points at a freed array.
            self._input = self._tensor(batch[i : i + 1], shared_memory=True)
            self.request.set_input_tensor(self._input)
            self.request.infer(share_outputs=True)
            outs.append(self.request.get_output_tensor(0).data.copy())
        return outs[0] if len(outs) == 1 else np.concatenate(outs, axis=0)

    def executed_precisions(self) -> dict[str, int]:
        """How many compute layers the CPU plugin actually executes in each precision."""
        counts: dict[str, int] = {}
        for op in self.compiled.get_runtime_model().get_ops():
            rt = op.get_rt_info()
            if rt["layerType"].astype(str) in ("Convolution", "FullyConnected", "MatMul", "GroupConvolution"):
                prec = rt["runtimePrecision"].astype(str)
                counts[prec] = counts.get(prec, 0) + 1
        return counts




class OpenVINOQueue(InFlight):
    """OpenVINO's AsyncInferQueue on an IR compiled with the THROUGHPUT hint (it picks the streams and requests)."""

    def __init__(self, artifact: Path, threads: int = 0, precision: str = "f32", depth: int = 0):
        ov = require("openvino", "openvino", "the OpenVINO runner")
        config = {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": precision or "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(artifact)), "CPU", config)
        self.input_dtype = self.compiled.input(0).get_element_type().to_dtype()
        self.depth = depth or int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.queue = ov.AsyncInferQueue(self.compiled, self.depth)
        self.queue.set_callback(self._done)
        streams = int(self.compiled.get_property("NUM_STREAMS"))
        self.runtime = (f"openvino {ov.get_version().split('-')[0]} (CPU, throughput: {self.depth} requests, {streams} streams, "
                        f"{int(self.compiled.get_property('INFERENCE_NUM_THREADS'))} threads)")

    @staticmethod
    def _done(request, future: Future) -> None:
        future.set_result(request.get_output_tensor(0).data.copy())

    def submit(self, batch: np.ndarray) -> Future:
        future: Future = Future()
        # start_async waits for a free request when all `depth` are busy
        self.queue.start_async({0: as_input(batch, self.input_dtype)}, future)
        return future

    def close(self) -> None:
        self.queue.wait_all()


RUNTIME = Runtime(
    "openvino",
    load=lambda artifact, threads, precision, cache_dir, exact: OpenVINORunner(artifact, threads, precision, unsaturated_int8=exact),
    own_queue=OpenVINOQueue,
)

"""Throughput mode: several inferences in flight at once, for boards with cores to spare.

OpenVINO keeps them in its own AsyncInferQueue on a model compiled with the THROUGHPUT hint (it
picks the streams and requests). ONNX Runtime and LiteRT get one session/interpreter per lane,
the cores shared out between the lanes, each lane on its own thread (both release the GIL while
they run). Either way `submit` returns a Future, so the camera loop can hand out decisions in
frame order.

Device side: numpy and, inside functions, the one runtime it needs.
"""
from __future__ import annotations

import os
import queue
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from edge.errors import UserError
from edge.runners import as_input, load_runner, require


class InFlight:
    """Up to `depth` inferences at once; `submit(x)` -> Future of the logits (1, classes)."""

    depth: int
    runtime: str

    def submit(self, batch: np.ndarray) -> Future:
        raise NotImplementedError

    def close(self) -> None:
        pass


class OpenVINOQueue(InFlight):
    """OpenVINO's AsyncInferQueue on an IR compiled with the THROUGHPUT hint."""

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


class LaneQueue(InFlight):
    """One runner per lane, each on its own thread; a submitted batch takes the next free lane."""

    def __init__(self, runners: list):
        self.depth = len(runners)
        self.lanes: queue.Queue = queue.Queue()
        for runner in runners:
            self.lanes.put(runner)
        self.pool = ThreadPoolExecutor(self.depth, thread_name_prefix="lane")
        first = runners[0]
        self.runtime = f"{first.runtime}, throughput: {self.depth} lanes of {first.threads} thread(s)"

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        runner = self.lanes.get()
        try:
            return runner.infer(batch)
        finally:
            self.lanes.put(runner)

    def submit(self, batch: np.ndarray) -> Future:
        return self.pool.submit(self._infer, batch)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def open_in_flight(runtime: str, artifact: Path, threads: int = 0, precision: str = "f32", depth: int = 0,
                   pixels=None) -> InFlight:
    """Throughput mode for a bundle's runtime. `threads`: all lanes together (0 = every core); `depth`: inferences
    in flight (0 = OpenVINO's optimal request count, else one lane per core); `pixels`: the Preprocess whose
    pixels the lanes take (Runner.accept_pixels), None for tensors."""
    if runtime == "openvino":
        return OpenVINOQueue(artifact, threads, precision, depth)
    if runtime == "tensorrt":
        raise UserError("--mode throughput is for CPU runtimes; a TensorRT engine runs one frame at a time here: use --mode latency")
    cores = int(threads) if threads else (os.cpu_count() or 1)
    lanes = depth or cores
    per_lane = max(1, cores // lanes)
    runners = [load_runner(runtime, artifact, per_lane, precision) for _ in range(lanes)]
    if pixels is not None:
        for runner in runners:
            runner.accept_pixels(pixels)
    return LaneQueue(runners)

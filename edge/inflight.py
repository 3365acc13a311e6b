"""Throughput mode: several inferences in flight at once, for boards with cores to spare.

A runtime with a queue of its own keeps them there (OpenVINO's AsyncInferQueue on a model compiled with the THROUGHPUT
hint: edge.runners.openvino). The others (ONNX Runtime, LiteRT) get one session/interpreter per lane,
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
from edge.runners import InFlight, load_runner, runtime


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


def open_in_flight(name: str, artifact: Path, threads: int = 0, precision: str = "f32", depth: int = 0,
                   pixels=None) -> InFlight:
    """Throughput mode for a bundle's runtime. `threads`: all lanes together (0 = every core); `depth`: inferences
    in flight (0 = OpenVINO's optimal request count, else one lane per core); `pixels`: the Preprocess whose
    pixels the lanes take (Runner.accept_pixels), None for tensors."""
    declared = runtime(name)
    if declared.own_queue is not None:
        return declared.own_queue(artifact, threads, precision, depth)
    if not declared.lanes:
        raise UserError(f"--mode throughput: {name} runs one frame at a time here: use --mode latency")
    cores = int(threads) if threads else (os.cpu_count() or 1)
    lanes = depth or cores
    per_lane = max(1, cores // lanes)
    runners = [load_runner(name, artifact, per_lane, precision) for _ in range(lanes)]
    if pixels is not None:
        for runner in runners:
            runner.accept_pixels(pixels)
    return LaneQueue(runners)

"""ONNX Runtime's runner, and the same file read as TensorRT reads it (the Jetson target's host reference).
Device side: numpy and, inside functions, onnxruntime."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edge.runners.base import PIXELS_INPUT, Runner, Runtime, as_input, require
from edge.runners.tensorrt import is_qdq

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8}


class OnnxRuntimeRunner(Runner):
    def __init__(self, artifact: Path, threads: int = 0, providers: list[str] | None = None, unsaturated_int8: bool = False,
                 literal_qdq: bool = False):
        """`unsaturated_int8`: leave Q/DQ pairs unfused, so int8 values are summed in float (dequantized values): no
        saturation on any CPU, as an accelerator's int32 accumulators, to within float rounding (the order of a float
        sum differs by CPU and can move a value on a rounding tie by one step); fused, x86 without VNNI can saturate."""
        ort = require("onnxruntime", "onnxruntime", "the ONNX Runtime runner")
        options = ort.SessionOptions()
        options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_BASIC if unsaturated_int8
                                            else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        if literal_qdq:
            # The Q/DQ file's own semantics, op by op, as another runtime (TensorRT) reads it: without ONNX Runtime's
            # Q/DQ handling, which is its own board's semantics (ORT_ENABLE_BASIC keeps it, so an ONNX Runtime board's
            # answers are seen) but moved a logit by 0.34 of 7.5 on NNCF's Q/DQ file of the tiny test b0 against the
            # file run op by op (ORT_DISABLE_ALL), on Zen 4 and emulated Haswell alike; without it the two agree to 1e-6.
            options.add_session_config_entry("session.disable_quant_qdq", "1")
        if threads:
            options.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(str(artifact), options, providers=providers or ["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.input_dtype = _ORT_TYPES.get(self.session.get_inputs()[0].type, np.float32)
        self.takes_pixels = self.input_name == PIXELS_INPUT  # uint8, or float32 pixels for TensorRT (targets.jetson)
        self.threads = int(threads) if threads else (os.cpu_count() or 1)  # ORT's default: one per core
        provider = self.session.get_providers()[0].replace("ExecutionProvider", "")
        self.runtime = f"onnxruntime {ort.__version__} ({provider})" + ("; unsaturated int8 sums (Q/DQ unfused)" if unsaturated_int8 else "")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = as_input(batch, self.input_dtype)
        outs = [self.session.run(None, {self.input_name: batch[i : i + 1]})[0] for i in range(batch.shape[0])]
        return np.concatenate(outs, axis=0)




class TensorRTReference(OnnxRuntimeRunner):
    """A TensorRT artifact (Q/DQ ONNX) run where TensorRT is not: ONNX Runtime reading the file literally, as TensorRT
    does, its int8 sums never saturated (TensorRT sums int8 products in int32; ONNX Runtime's fused kernels on x86
    without VNNI sum pairs in 16 bits and saturate: Lite0 agreed with float on 0.243 of crops on a Zen 3, 0.878 unfused)."""

    def __init__(self, artifact: Path, threads: int = 0):
        qdq = is_qdq(artifact)
        super().__init__(artifact, threads, unsaturated_int8=qdq, literal_qdq=qdq)
        self.runtime += (" as the int8 reference for TensorRT's int32 sums" if qdq else
                         " as the float reference") + "; TensorRT engine not built on this host"


RUNTIME = Runtime(
    "onnxruntime",
    load=lambda artifact, threads, precision, cache_dir, exact: OnnxRuntimeRunner(artifact, threads, unsaturated_int8=exact),
)
# TensorRT's arithmetic on a host without it; `exact` changes nothing: TensorRT's int8 sums never saturate.
TENSORRT_REFERENCE = Runtime(
    "tensorrt-reference",
    load=lambda artifact, threads, precision, cache_dir, exact: TensorRTReference(artifact, threads),
)

"""Runners: a model artifact loaded in its target's own runtime, classifying batches.

A runner takes what its artifact takes: NCHW float32 tensors (`Preprocess.__call__`), or the camera's
pixels, NHWC uint8 BGR (`Preprocess.pixels`), for an artifact that holds the rest of its preprocessing.

Device side: imports numpy and, inside functions, the one runtime it needs.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edge.errors import MissingRuntime, UserError  # noqa: F401  (MissingRuntime: re-exported)
from edge.runner_base import PIXELS_INPUT, Runner, as_input, require  # noqa: F401  (re-exported)
from edge.isa import features


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


def _tensorrt(artifact: Path, threads: int, precision: str, cache_dir: Path | None):
    from edge import tensorrt_engine

    # A Q/DQ file is int8 by construction; a float file is the fp32 reference unless asked for fp16.
    engine_precision = "int8" if tensorrt_engine.is_qdq(artifact) else ("fp32" if precision == "f32" else "fp16")
    engine = tensorrt_engine.build_engine(artifact, cache_dir or Path(artifact).parent / "engines", engine_precision)
    return tensorrt_engine.TensorRTRunner(engine)


# The one registry of runtimes, for host and board alike: name -> (artifact, threads, precision, cache_dir) -> Runner.
# `exact`: int8 sums as a board that never saturates makes them (edge.isa.must_not_saturate). LiteRT's XNNPACK
# widens products on every ISA and TensorRT sums in int32, so they never saturate anyway.
RUNTIMES = {
    "openvino": lambda artifact, threads, precision, cache_dir, exact: OpenVINORunner(artifact, threads, precision, unsaturated_int8=exact),
    "onnxruntime": lambda artifact, threads, precision, cache_dir, exact: OnnxRuntimeRunner(artifact, threads, unsaturated_int8=exact),
    "litert": lambda artifact, threads, precision, cache_dir, exact: LiteRTRunner(artifact, threads),
    "tensorrt": lambda artifact, threads, precision, cache_dir, exact: _tensorrt(artifact, threads, precision, cache_dir),
}


def load_runner(runtime: str, artifact: Path, threads: int = 0, precision: str = "f32", cache_dir: Path | None = None,
                unsaturated_int8: bool = False) -> Runner:
    """The runner for a runtime name (a target's `device_runtime`, a bundle's "runtime")."""
    if runtime not in RUNTIMES:
        raise UserError(f"unknown runtime {runtime!r}; use one of {', '.join(RUNTIMES)}")
    return RUNTIMES[runtime](artifact, threads, precision, cache_dir, unsaturated_int8)


def quantize_input(x: np.ndarray, details: dict) -> np.ndarray:
    """A float tensor in the dtype a LiteRT input wants, with the model's own scale and zero-point."""
    dtype = details["dtype"]
    if dtype == np.float32:
        return np.ascontiguousarray(x, dtype=np.float32)
    scale, zero = details["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, details: dict) -> np.ndarray:
    """A LiteRT tensor back to float with its scale and zero-point (a float one as it is)."""
    scale, zero = details["quantization"]
    return (y.astype(np.float32) - zero) * scale if scale else np.asarray(y, dtype=np.float32)


def litert_kernels(interpreter) -> str:
    """Which kernels the interpreter really runs: XNNPACK when its delegate took the graph, else LiteRT's built-in ones.

    Read from the graph, not assumed: XNNPACK is skipped silently when it cannot read the CPU
    (no /sys, as in a bare chroot), and a delegated partition is one DELEGATE node.
    """
    if not hasattr(interpreter, "_get_ops_details"):  # an old tflite-runtime
        return "kernels unknown"
    partitions = sum(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())
    if partitions == 0:
        return "built-in kernels, XNNPACK not applied"
    return "XNNPACK" if partitions == 1 else f"XNNPACK in {partitions} partitions, built-in kernels between"


class LiteRTRunner(Runner):
    """A .tflite model in the LiteRT interpreter (ai-edge-litert; tflite-runtime as the fallback).

    Takes NCHW float32 tensors (transposed to the model's NHWC input) or, after `accept_pixels`, the camera's
    pixels; for a full-integer model, quantizes the input and dequantizes the output with the model's own
    scale and zero-point.
    """

    def __init__(self, artifact: Path, threads: int = 0):
        try:
            import ai_edge_litert
            from ai_edge_litert.interpreter import Interpreter

            version, name = ai_edge_litert.__version__, "litert"
        except ImportError:
            Interpreter = require("tflite_runtime.interpreter", "ai-edge-litert", "the LiteRT runner").Interpreter
            import tflite_runtime

            version, name = tflite_runtime.__version__, "tflite-runtime"
        self.threads = int(threads) if threads else (os.cpu_count() or 1)
        self.interpreter = Interpreter(model_path=str(artifact), num_threads=self.threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.input_dtype = np.float32  # the runner's own input: NCHW tensors, or pixels after accept_pixels
        self.runtime = f"{name} {version} (CPU, {litert_kernels(self.interpreter)}; {' '.join(features()) or 'CPU features unknown'})"

    def accept_pixels(self, preprocess) -> None:
        """Take the camera's pixels (NHWC uint8 BGR) and map them straight to the model's NHWC input through one
        256-entry table per channel: the host's x * scale + shift, quantized with the model's own input scale and
        zero point, so bit for bit the tensor path's input without its float tensor, transpose or rounding pass.
        (A .tflite input's quantization is per tensor with an integer zero point: it cannot hold per-channel
        mean/std, nor even the Lite models' 0.5/0.5, whose zero point would be 127.5.)"""
        values = np.arange(256, dtype=np.float32)
        table = np.stack([values * preprocess.scale[c] + preprocess.shift[c] for c in range(3)])  # RGB rows
        table = quantize_input(table, self.input)
        # OpenCV's LUT, one table per channel (an int8 table as its bytes): 0.36 ms for 224x224 against 0.74 in numpy
        self.pixel_dtype = table.dtype
        lut = np.ascontiguousarray(table.T.reshape(1, 256, 3))
        self.pixel_lut = lut.view(np.uint8) if table.dtype == np.int8 else lut
        self.takes_pixels, self.input_dtype = True, np.uint8
        self.pixels_by = "a 256-entry table per channel in the runner, to the model's own input quantization"

    def _input(self, batch: np.ndarray) -> np.ndarray:
        if not self.takes_pixels:
            return quantize_input(batch.transpose(0, 2, 3, 1), self.input)
        import cv2

        rgb = (cv2.cvtColor(img, cv2.COLOR_BGR2RGB) for img in as_input(batch, np.uint8))
        return np.stack([cv2.LUT(img, self.pixel_lut) for img in rgb]).view(self.pixel_dtype)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        outs = []
        for i in range(batch.shape[0]):
            self.interpreter.set_tensor(self.input["index"], self._input(batch[i : i + 1]))
            self.interpreter.invoke()
            outs.append(dequantize(self.interpreter.get_tensor(self.output["index"]), self.output))
        return np.concatenate(outs, axis=0)

"""LiteRT's runner: a .tflite model in the interpreter (XNNPACK where it applies). XNNPACK widens int8 products on
every ISA, so its sums never saturate and the runner needs no exact mode. Device side: numpy, OpenCV and the interpreter."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edge.isa import features
from edge.runners.base import Runner, Runtime, as_input, require


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
        # OpenCV's LUT, one table per channel (an int8 table as its bytes): under half numpy's time for the same lookup
        self.pixel_dtype = table.dtype
        lut = np.ascontiguousarray(table.T.reshape(1, 256, 3))
        self.pixel_lut = lut.view(np.uint8) if table.dtype == np.int8 else lut
        self.takes_pixels, self.input_dtype = True, np.uint8
        self.pixels_by = "a 256-entry table per channel in the runner, to the model's own input quantization"

    def prepare(self, batch: np.ndarray) -> np.ndarray:
        """What the interpreter is handed for `batch`: the model's NHWC input in its own dtype (the camera program
        makes it on its capture thread)."""
        if not self.takes_pixels:
            return quantize_input(batch.transpose(0, 2, 3, 1), self.input)
        import cv2

        rgb = (cv2.cvtColor(img, cv2.COLOR_BGR2RGB) for img in as_input(batch, np.uint8))
        return np.stack([cv2.LUT(img, self.pixel_lut) for img in rgb]).view(self.pixel_dtype)

    def run(self, prepared: np.ndarray) -> np.ndarray:
        outs = []
        for i in range(prepared.shape[0]):
            self.interpreter.set_tensor(self.input["index"], prepared[i : i + 1])
            self.interpreter.invoke()
            outs.append(dequantize(self.interpreter.get_tensor(self.output["index"]), self.output))
        return np.concatenate(outs, axis=0)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.run(self.prepare(batch))


RUNTIME = Runtime("litert", load=lambda artifact, threads, precision, cache_dir, exact: LiteRTRunner(artifact, threads))

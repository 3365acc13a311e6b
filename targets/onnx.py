"""ONNX Runtime: the generic CPU/ARM target. Float ONNX with BatchNorm folded; int8 Q/DQ ONNX.

Quantizer: ONNX Runtime's own static quantization (QDQ format, per-channel int8 weights,
uint8 activations). Measured with `tools/compare_onnx_quantizers.py` (real Lite0 weights,
16 calibration photos, top-1 agreement with float on 200 crops of real photos, this 2-core
CPU): ONNX Runtime static 85.5 % agreement at 1.13 ms p50; NNCF's ONNX backend 81.0 % at
8.47 ms (its Q/DQ placement is not one ONNX Runtime's kernels fuse); float 2.54 ms. MinMax,
Percentile and Entropy calibration all landed within a point of each other (85.5-86.0 %).
ONNX Runtime's quantizer has no bias correction, so it quantizes a float model carrying NNCF's
corrected biases (bias_corrected): on Lite0 and 288 crops of real photos, 0.885 agreement against
0.743 without (tools/measure_fidelity.py), at ONNX Runtime's own fast placement.

Boards whose int8 kernels saturate (x86 without VNNI): NNCF quantizes, with its overflow fix (7-bit
weights on every layer but the depthwise ones, whose products MLAS sums in 32 bits) and its own bias
correction for that grid, and per-tensor activations; `fused_for_onnx_runtime` then rewrites its Q/DQ
file, keeping every grid value, into the form ONNX Runtime fuses (all of Lite0's 49 convolutions and 9
residual adds). On 1000 real ImageNet photos on a Zen 3: agreement with float 0.986 against 0.965 for
ONNX Runtime's own quantizer with reduce_range (the same 7-bit weights), at 8.2 against 9.5 ms p50.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calibration.adapters import OnnxRuntimeReader
from edge.errors import UserError
from edge.isa import saturates
from targets.base import OPENCV, Target, bias_recipe, require, requantize
from targets.nncf_common import bias_corrected, calibration_example, nncf_quantize
from targets.onnx_graph import (activations_fold_into_grids, depthwise_weights, export_folded, float_inputs,
                                fused_for_onnx_runtime, int8_census, nodes_for, with_pixel_input)


def full_range_depthwise(prepared: Path, reduce_range: bool) -> dict:
    """quantize_static's extra_options keeping depthwise weights at 8 bits under reduce_range."""
    if not reduce_range:
        return {}
    return {"TensorQuantOverrides": {w: [{"axis": 0, "reduce_range": False}] for w in depthwise_weights(prepared)}}


SATURATING_QUANTIZER = ("NNCF's with its overflow fix, fused for ONNX Runtime, where every activation is a "
                        "ReLU/ReLU6 (Lite); ONNX Runtime's with reduce_range otherwise (swish)")


# onnxruntime.quantization.CalibrationMethod; MinMax measured best (see above)
CALIBRATION_METHODS = ("MinMax", "Entropy", "Percentile", "Distribution")


@dataclass(frozen=True)
class OnnxRuntimeSettings:
    """TARGET=onnx's own settings: `calibration`, ONNX Runtime's CalibrationMethod for its static quantizer."""

    calibration: str = "MinMax"

    def __post_init__(self):
        if self.calibration not in CALIBRATION_METHODS:
            raise UserError(f"unknown settings.calibration={self.calibration!r}; use one of {', '.join(CALIBRATION_METHODS)}")


class OnnxRuntimeTarget(Target):
    """Any CPU board with ONNX Runtime: float ONNX, ONNX Runtime's static int8 Q/DQ on NNCF-corrected biases."""

    name = "onnx"
    requires = {"onnx": "onnx", "onnxruntime": "onnxruntime"}
    device_runtime = "onnxruntime"
    device_requires = (OPENCV, "onnxruntime==1.32.0")
    artifact_suffix = ".onnx"
    pixel_type = "uint8"  # the camera's own bytes
    settings = OnnxRuntimeSettings

    def recipe(self, quant, isa: str) -> dict:
        if saturates(isa):  # quantize(): which quantizer follows from the model's activations
            return {"quantizer": SATURATING_QUANTIZER, "weights": "7-bit; depthwise 8-bit (summed in 32 bits)", **bias_recipe(quant)}
        return {"quantizer": "ONNX Runtime's quantize_static", **bias_recipe(quant)}

    def convert_float(self, model, example, out: Path) -> Path:
        return export_folded(model, example, out)

    def quantize(self, model, float_artifact: Path, calibration: np.ndarray, quant, out: Path, exclude: tuple[str, ...] = (), *,
                 isa: str, settings=None) -> Path:
        """Float ONNX + calibration batch -> QDQ int8 ONNX with ONNX Runtime's static quantization.

        ONNX Runtime's quantizer has no bias correction: it quantizes a float model that carries NNCF's
        corrected biases (bias_corrected). `exclude`: PyTorch module names whose Conv/Gemm
        stays float (ONNX Runtime's nodes_to_exclude).
        """
        require("onnxruntime", "onnxruntime", self.name)
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        path = Path(out).with_suffix(".onnx")
        if saturates(isa) and activations_fold_into_grids(float_artifact):  # see the module's docstring
            # ONNX Runtime's QLinearConv takes one activation scale per tensor
            int8 = nncf_quantize(float_artifact, calibration, quant.per_tensor_activations(), exclude, saturates=True)
            require("onnx", "onnx", self.name).save(fused_for_onnx_runtime(int8), str(path))
            return path
        nodes = nodes_for(float_artifact, exclude)
        with tempfile.TemporaryDirectory() as tmp:
            corrected = bias_corrected(model, float_artifact, calibration, quant, exclude)  # for 8-bit weights
            if corrected is not None:
                float_artifact = self.convert_float(corrected, calibration_example(calibration), Path(tmp) / "corrected")
            prepared = Path(tmp) / "prepared.onnx"
            quant_pre_process(str(float_artifact), str(prepared))  # shape inference + graph clean-up
            quantize_static(
                str(prepared), str(path), OnnxRuntimeReader(calibration, "input"),
                quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=getattr(CalibrationMethod, (settings or self.settings()).calibration),
                reduce_range=saturates(isa),  # 7-bit weights where the board's int8 kernels can saturate
                extra_options=full_range_depthwise(prepared, saturates(isa)),
                nodes_to_exclude=[nodes[layer] for layer in exclude],
            )
        if exclude:
            float_inputs(path, {nodes[layer] for layer in exclude})
        return path

    def export_qat(self, qat_model, float_model, example, calibration: np.ndarray, quant, out: Path, *, isa: str,
                   settings=None) -> Path:
        """The QAT-trained weights through ONNX Runtime's own static quantization (ranges calibrated again).

        NNCF's own Q/DQ export ran 4-5x slower than ONNX Runtime's placement in ONNX Runtime here
        (tiny b0: 3.9 vs 0.8 ms p50), so the weights QAT trained take this target's PTQ route.
        """
        return requantize(self, qat_model, float_model, example, calibration, quant, out, isa, settings)

    def with_pixel_input(self, artifact: Path, preprocess, out: Path) -> Path:
        """The preprocessing as the graph's first nodes (onnx_graph.prepend_preprocessing); the rest unchanged."""
        return with_pixel_input(artifact, preprocess, out, self.pixel_type)

    def describe(self, artifact: Path) -> dict:
        return int8_census(artifact)


TARGET = OnnxRuntimeTarget()

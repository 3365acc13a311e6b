"""NVIDIA Jetson (Orin / Xavier) with TensorRT: an int8 Q/DQ ONNX for explicit quantization.

Host side: BatchNorm folded, NNCF post-training quantization with its ONNX backend (QAT trains
NNCF's PyTorch quantizers instead), standard QuantizeLinear/DequantizeLinear pairs, symmetric and
int8 throughout (TensorRT needs zero-point 0 and rejects uint8 quantizers), per-channel weights. NNCF's placement suits TensorRT on EfficientNet:
both inputs of every residual Add, the input of global average pooling and both inputs of the
squeeze-excite multiply are quantized, so those layers fuse in int8; the two tiny 1x1
squeeze-excite convolutions on pooled vectors stay float (FP16 on the board).

The engine is built on the board (`edge/runners/tensorrt.py`): engines are not portable. On a
host without TensorRT and an NVIDIA GPU, validation runs the Q/DQ ONNX in ONNX Runtime as the
int8 reference and the report says so.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from edge.errors import UserError
from edge.runners import tensorrt as trt_runtime
from targets.base import Target, require
from targets.nncf_common import export_qdq, nncf_quantize
from targets.onnx_graph import export_folded, int8_census, with_pixel_input


def signed_int8(model) -> int:
    """Rewrite uint8 Q/DQ pairs (zero-point 0: NNCF's grid for ReLU6 outputs) as int8, in place.

    TensorRT's ONNX parser takes int8 QuantizeLinear only. A uint8 grid [0, 255]·s becomes the int8
    grid [-128, 127]·2s: the same range at half the resolution, which is what TensorRT's symmetric
    int8 gives a non-negative tensor, so ONNX Runtime measures the precision the engine will have.
    Returns how many quantizers changed.
    """
    onnx = require("onnx", "onnx", "the jetson target")
    from onnx import numpy_helper

    tensors = {t.name: t for t in model.graph.initializer}
    tensors.update({n.output[0]: n.attribute[0].t for n in model.graph.node if n.op_type == "Constant" and n.attribute})
    scales, zeros = set(), set()
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zero = numpy_helper.to_array(tensors[node.input[2]])
            if zero.dtype == np.uint8:
                if zero.any():
                    raise UserError(f"{node.name}: asymmetric uint8 quantizer; TensorRT needs zero-point 0 (quant.preset=performance)")
                scales.add(node.input[1])
                zeros.add(node.input[2])
    for zero_name in zeros:
        zero = numpy_helper.to_array(tensors[zero_name])
        tensors[zero_name].CopyFrom(numpy_helper.from_array(zero.astype(np.int8), zero_name))
    for scale_name in scales:
        scale = numpy_helper.to_array(tensors[scale_name])
        tensors[scale_name].CopyFrom(numpy_helper.from_array((scale * 2).astype(scale.dtype), scale_name))
    stale = [info for info in model.graph.value_info if info.type.tensor_type.elem_type == onnx.TensorProto.UINT8]
    for info in stale:  # the Q outputs' recorded types; shape inference gives them again
        model.graph.value_info.remove(info)
    return len(zeros)


def qdq_placement(artifact: Path) -> dict:
    onnx = require("onnx", "onnx", "the jetson target")
    from onnx import numpy_helper

    g = onnx.load(str(artifact)).graph
    producer = {o: n for n in g.node for o in n.output}
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in g.node if n.op_type == "Constant" and n.attribute}

    def from_dq(tensor: str) -> bool:
        node = producer.get(tensor)
        return node is not None and node.op_type == "DequantizeLinear"

    def quantized_inputs(op: str, arity: int):
        nodes = [n for n in g.node if n.op_type == op and len(n.input) >= arity]
        return len(nodes), sum(all(from_dq(i) for i in n.input[:arity]) for n in nodes)

    adds, adds_q = quantized_inputs("Add", 2)
    pools, pools_q = quantized_inputs("GlobalAveragePool", 1)
    # The squeeze-excite multiply: feature map x sigmoid(gate); a swish's Mul reads a Sigmoid on both paths' source.
    muls = [n for n in g.node if n.op_type == "Mul" and len(n.input) == 2]
    se = [n for n in muls if any(from_dq(i) for i in n.input) or not any(producer.get(i) and producer[i].op_type == "Conv" for i in n.input)]
    se_q = sum(all(from_dq(i) for i in n.input) for n in se)
    activation_scales = [inits.get(n.input[1], consts.get(n.input[1])) for n in g.node
                         if n.op_type == "QuantizeLinear" and n.input[0] not in inits and n.input[0] not in consts]
    zero_points = [inits.get(n.input[2], consts.get(n.input[2])) for n in g.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    zero_points = [zp for zp in zero_points if zp is not None]
    return {
        "residual_adds": adds,
        "residual_adds_int8": adds_q,
        "global_pools": pools,
        "global_pools_int8": pools_q,
        "se_multiplies": len(se),
        "se_multiplies_int8": se_q,
        "nonzero_zero_points": sum(bool(zp.any()) for zp in zero_points),
        "uint8_quantizers": sum(zp.dtype == np.uint8 for zp in zero_points),  # TensorRT's parser rejects them
        # TensorRT quantizes activations per tensor only (weights may have a scale per output channel)
        "per_channel_activation_quantizers": sum(scale is None or scale.size > 1 for scale in activation_scales),
    }


class JetsonTarget(Target):
    """ONNX's float export; NNCF's symmetric int8 Q/DQ for TensorRT; the engine built on the board."""

    name = "jetson"
    requires = {"nncf": "nncf", "onnx": "onnx", "onnxruntime": "onnxruntime"}
    device_runtime = "tensorrt"
    artifact_suffix = ".onnx"
    device_requires = ("# OpenCV (with GStreamer) and TensorRT come with JetPack: do not pip-install them on a Jetson.",
                       "cuda-python")
    device_install = ("JetPack already has TensorRT and OpenCV: `pip install cuda-python numpy`. The first start builds "
                      "the TensorRT engine on this board (minutes) and caches it in `model/engines/`, keyed by the ONNX file, "
                      "the TensorRT version, the GPU and the precision.")
    higher_precision = "float (FP16 in the TensorRT engine)"
    qat_preset = "performance"  # symmetric activations: TensorRT needs zero-point 0
    # Pixels as float32 (0-255): uint8 network inputs came late to TensorRT and its ONNX parser, with limits on
    # what may read them; a float input builds on every JetPack's TensorRT. The runner casts the camera's bytes
    # (224x224x3, ~0.1 ms); the reordering and normalisation still run on the GPU.
    pixel_type = "float32"

    def convert_float(self, model, example, out: Path) -> Path:
        return export_folded(model, example, out)

    def with_pixel_input(self, artifact: Path, preprocess, out: Path) -> Path:
        return with_pixel_input(artifact, preprocess, out, self.pixel_type)

    def quantize(self, model, float_artifact: Path, calibration: np.ndarray, quant, out: Path, exclude: tuple[str, ...] = (), *,
                 isa: str, settings=None) -> Path:
        """Float ONNX + calibration batch -> symmetric int8 Q/DQ ONNX with NNCF's ONNX backend.

        NNCF's ONNX backend has the full, layer-by-layer bias correction its PyTorch backend lacks
        (measured on Lite0: 0.868 top-1 agreement with float against 0.844, tools/measure_fidelity.py).
        `exclude`: PyTorch module names kept out of int8 (TensorRT runs them in FP16).
        """
        onnx = require("onnx", "onnx", "the jetson target")
        # TensorRT quantizes activations per tensor only (NNCF's CPU default gives depthwise inputs a scale per channel)
        tensorrt = dataclasses.replace(quant.per_tensor_activations(), preset=self.qat_preset)
        int8 = nncf_quantize(float_artifact, calibration, tensorrt, exclude, saturates=False)  # TensorRT sums in int32
        signed_int8(int8)
        path = Path(out).with_suffix(".onnx")
        onnx.save(int8, str(path))
        return path

    def export_qat(self, qat_model, float_model, example, calibration: np.ndarray, quant, out: Path, *, isa: str) -> Path:
        onnx = require("onnx", "onnx", "the jetson target")
        path = export_qdq(qat_model, example, out)
        model = onnx.load(str(path))
        signed_int8(model)
        onnx.save(model, str(path))
        return path

    recipe = Target.recipe  # NNCF's in PyTorch, not ONNX Runtime's quantizer

    def check(self, cfg) -> None:
        if cfg.quant.activation_scales != "per-tensor":
            raise UserError("quant.activation_scales=per-channel: TensorRT quantizes activations per tensor only; "
                            "drop the setting for TARGET=jetson")

    @property
    def host_runtime(self) -> str:
        """The real TensorRT engine where TensorRT and a GPU exist; elsewhere ONNX Runtime reading the Q/DQ file as
        TensorRT does, its int8 sums never saturated (edge.runners.onnxruntime.TensorRTReference)."""
        return self.device_runtime if trt_runtime.available()[0] else "tensorrt-reference"

    def describe(self, artifact: Path) -> dict:
        """The ONNX op census plus the Q/DQ placement checks TensorRT cares about."""
        info = int8_census(artifact)
        info.update(qdq_placement(artifact))
        if info["quantize_ops"]:
            info["notes"] = [
                "The Q/DQ ONNX stores float weights behind QuantizeLinear, the form every TensorRT since 8.0 "
                "accepts; TensorRT quantizes them when it builds the engine, so the engine holds int8 weights "
                "while this file is float-sized."
            ]
        return info


TARGET = JetsonTarget()

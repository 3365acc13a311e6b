"""NVIDIA Jetson (Orin / Xavier) with TensorRT: an int8 Q/DQ ONNX for explicit quantization.

Host side: BatchNorm folded, NNCF post-training quantization in PyTorch (the same model QAT
will train), exported with standard QuantizeLinear/DequantizeLinear pairs, symmetric (TensorRT
needs zero-point 0), per-channel weights. NNCF's placement suits TensorRT on EfficientNet:
both inputs of every residual Add, the input of global average pooling and both inputs of the
squeeze-excite multiply are quantized, so those layers fuse in int8; the two tiny 1x1
squeeze-excite convolutions on pooled vectors stay float (FP16 on the board).

The engine is built on the board (`edge/tensorrt_engine.py`): engines are not portable. On a
host without TensorRT and an NVIDIA GPU, validation runs the Q/DQ ONNX in ONNX Runtime as the
int8 reference and the report says so.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from targets import onnx as onnx_target
from targets.base import require

name = "jetson"
requires = ("nncf", "onnx", "onnxruntime")
device_runtime = "tensorrt"  # the runner the bundle uses on the board
device_requires = ("cuda-python",)  # TensorRT itself comes with JetPack
artifact_suffix = ".onnx"
higher_precision = "float (FP16 in the TensorRT engine)"  # what QUANT=auto keeps a sensitive layer in
qat_preset = "performance"  # symmetric activations: TensorRT needs zero-point 0

convert_float = onnx_target.convert_float


def quantize(model, float_artifact: Path, calibration: np.ndarray, quant, out: Path, exclude: tuple[str, ...] = ()) -> Path:
    """Float PyTorch model + calibration batch -> symmetric int8 Q/DQ ONNX via NNCF (torch backend).

    The same PTQ QAT starts from. `exclude`: PyTorch module names kept out of int8 (TensorRT runs them in FP16).
    """
    import torch

    require("nncf", "nncf", name)
    from pipeline.qat import prepare

    _, quantized = prepare(model, calibration, quant, qat_preset, exclude)
    return onnx_target.export_qdq(quantized, torch.from_numpy(calibration[:1]), out)


def export_qat(qat_model, float_model, example, calibration: np.ndarray, quant, out: Path) -> Path:
    return onnx_target.export_qdq(qat_model, example, out)


def runner(artifact: Path, threads: int = 0, precision: str = "f32"):
    """The real TensorRT engine where TensorRT and a GPU exist; ONNX Runtime as the reference elsewhere."""
    from edge import tensorrt_engine as trt_engine

    ok, _ = trt_engine.available()
    quantized = trt_engine.is_qdq(artifact)
    if ok:
        engine = trt_engine.build_engine(artifact, Path(artifact).parent / "engines", "int8" if quantized else "fp32")
        return trt_engine.TensorRTRunner(engine)
    r = onnx_target.runner(artifact, threads)
    r.runtime += f" as the {'int8' if quantized else 'float'} reference; TensorRT engine not built on this host"
    return r


def describe(artifact: Path) -> dict:
    """The ONNX op census plus the Q/DQ placement checks TensorRT cares about."""
    info = onnx_target.describe(artifact)
    info.update(qdq_placement(artifact))
    if info["quantize_ops"]:
        info["notes"] = [
            "The Q/DQ ONNX stores float weights behind QuantizeLinear, the form every TensorRT since 8.0 "
            "accepts; TensorRT quantizes them when it builds the engine, so the engine holds int8 weights "
            "while this file is float-sized."
        ]
    return info


def qdq_placement(artifact: Path) -> dict:
    onnx = require("onnx", "onnx", name)
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
    zero_points = []
    for n in g.node:
        if n.op_type == "QuantizeLinear" and len(n.input) > 2:
            zp = inits.get(n.input[2], consts.get(n.input[2]))
            if zp is not None:
                zero_points.append(int(np.abs(zp.astype(np.int64)).max()))
    return {
        "residual_adds": adds,
        "residual_adds_int8": adds_q,
        "global_pools": pools,
        "global_pools_int8": pools_q,
        "se_multiplies": len(se),
        "se_multiplies_int8": se_q,
        "nonzero_zero_points": sum(z != 0 for z in zero_points),
    }

"""OpenVINO: float IR via ov.convert_model, int8 IR via NNCF post-training quantization.

NNCF's OpenVINO backend is used rather than its torch backend because it is 5-30x
faster on CPUs and quantizes exactly the graph the runtime will execute.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from edge.runners import OpenVINORunner
from targets.base import require

name = "openvino"
requires = ("openvino", "nncf")
device_runtime = "openvino"  # the runner the bundle uses on the board
device_requires = ("openvino==2026.4.1",)
artifact_suffix = ".xml"

_COMPUTE_OPS = {"Convolution", "GroupConvolution", "MatMul"}


def _ov():
    return require("openvino", "openvino", name)


def convert_float(model, example, out: Path) -> Path:
    """PyTorch -> fp32 IR. Saved without fp16 compression so the float reference is true float."""
    ov = _ov()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace's deprecation notice, from inside OpenVINO
        ov_model = ov.convert_model(model, example_input=example, input=[tuple(example.shape)])
    return _save(ov, ov_model, out)


def quantize(model, float_artifact: Path, calibration: np.ndarray, quant, out: Path) -> Path:
    """fp32 IR + calibration batch -> int8 IR with NNCF PTQ (per-channel int8 weights, int8 activations)."""
    ov = _ov()
    nncf = require("nncf", "nncf", name)
    float_model = ov.Core().read_model(str(float_artifact))
    dataset = nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))])
    int8_model = nncf.quantize(float_model, dataset, **quant.nncf_kwargs(nncf, len(calibration)))
    return _save(ov, int8_model, out)


def _save(ov, ov_model, out: Path) -> Path:
    xml = Path(out).with_suffix(".xml")
    ov.save_model(ov_model, str(xml), compress_to_fp16=False)
    return xml


def runner(artifact: Path, threads: int = 0, precision: str = "f32") -> OpenVINORunner:
    return OpenVINORunner(artifact, threads, precision)


def describe(artifact: Path) -> dict:
    """Which compute ops read an int8 (FakeQuantize) activation, counted and weighted by multiply-adds."""
    ov = _ov()
    model = ov.Core().read_model(str(artifact))
    compute = quantized = fq = 0
    macs_total = macs_int8 = 0
    float_ops = []
    for op in model.get_ops():
        t = op.get_type_name()
        if t == "FakeQuantize":
            fq += 1
        if t not in _COMPUTE_OPS:
            continue
        compute += 1
        macs = _macs(op)
        macs_total += macs
        if op.input_value(0).get_node().get_type_name() == "FakeQuantize":
            quantized += 1
            macs_int8 += macs
        else:
            float_ops.append(op.get_friendly_name())
    return {
        "compute_ops": compute,
        "compute_ops_int8_input": quantized,
        "fake_quantize_ops": fq,
        "int8_macs_share": macs_int8 / macs_total if macs_total else 0.0,
        "float_compute_ops": float_ops[:20],
    }


def _macs(op) -> int:
    """Multiply-adds of a Convolution/GroupConvolution/MatMul at the IR's static shapes."""
    weight = [d.get_length() for d in op.get_input_partial_shape(1)]
    out = [d.get_length() for d in op.get_output_partial_shape(0)]
    if op.get_type_name() == "MatMul":
        return int(np.prod(out)) * int(op.get_input_partial_shape(0)[-1].get_length())
    return int(np.prod(weight)) * int(np.prod(out[2:]))


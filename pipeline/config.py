"""Deploy configuration: frozen dataclasses, a small YAML profile per target, KEY=value overrides."""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from edge import isa as int8_isa
from pipeline import PipelineError
from pipeline.model.family import get_spec
from targets import DEFAULT_TARGET, TARGETS, get_target

PROFILES = Path(__file__).resolve().parent / "profiles"


MODES = ("ptq", "qat", "auto")
OPTIMIZERS = ("adamw", "sgd")
BIAS_CORRECTIONS = ("full", "fast", "off")
QAT_DATA = ("labelled", "calibration")
PRESETS = ("auto", "mixed", "performance")  # NNCF's QuantizationPreset; auto: make_config picks by activation
ACTIVATION_SCALES = ("per-tensor", "per-channel")
PRECISIONS = ("f32", "bf16", "f16")  # a runtime's inference precision hint, where it takes one (f32 = true float)


def one_of(name: str, value, choices) -> None:
    """A setting that takes one of a few values: checked where it is made, so every target and stage sees it."""
    if value not in choices:
        raise PipelineError(f"unknown {name}={value!r}; use one of {', '.join(choices)}")


def at_least(name: str, value, low, optional: bool = False) -> None:
    if optional and value is None:
        return
    if value is None or value < low:
        raise PipelineError(f"{name}={value} is out of range; use a number >= {low}")


@dataclass(frozen=True)
class QuantConfig:
    """How to quantize: post-training (ptq), quantization-aware training (qat) or accuracy-aware PTQ (auto)."""

    mode: str = "ptq"
    # NNCF's preset; auto: make_config picks it from the model's activation (resolved_preset).
    preset: str = "auto"
    # full: NNCF's BiasCorrection, layer by layer through the already-quantized layers (measured
    # +13 points of agreement with float on Lite0, tools/measure_fidelity.py); fast: NNCF's
    # FastBiasCorrection (each layer alone); off. Targets whose quantizer has none get NNCF's corrected
    # biases in the float model they quantize (targets.nncf_common.bias_corrected).
    bias_correction: str = "full"
    # NNCF's activation scales. per-tensor: one per tensor, as GPU engines and fused CPU int8 kernels
    # need; per-channel: NNCF's CPU default, one per channel on depthwise inputs. On 1000 ImageNet photos
    # (Lite0, the default target, AVX2) per-tensor agreed with float on 0.985 against 0.979 (tools/measure_imagenet_photos.py).
    activation_scales: str = "per-tensor"
    # QUANT=qat: a few epochs at a low learning rate from the PTQ initialisation.
    qat_epochs: int = 3
    qat_lr: float = 1e-5
    qat_batch_size: int = 16
    qat_seed: int = 0
    # What QAT trains on. labelled: TRAIN_DATA, else half of DATA (cross-entropy + distillation);
    # calibration: the calibration images, no labels needed (distillation from the float model alone;
    # calibration images drawn from DATA are then left out of validation).
    qat_data: str = "labelled"
    # QUANT=auto: how many layers may go back to float, and how many images rank them.
    max_float_layers: int = 10
    sensitivity_images: int = 32
    # QUANT=auto, label-free: also keep layers out of int8 until int8's top-1 agrees with float's on
    # this share of the validation images (0 = MAX_DROP alone). Keeping the 2 most sensitive layers
    # of Lite0 lifted agreement 0.875 -> 0.931 on real photos (tools/measure_fidelity.py --keep-float).
    min_agreement: float = 0.0

    def __post_init__(self):
        # Every target reads these or none does: a bad value fails here, before any work, on every path.
        one_of("QUANT", self.mode, MODES)
        one_of("quant.preset", self.preset, PRESETS)
        one_of("quant.bias_correction", self.bias_correction, BIAS_CORRECTIONS)
        one_of("quant.activation_scales", self.activation_scales, ACTIVATION_SCALES)
        one_of("quant.qat_data", self.qat_data, QAT_DATA)
        if not 0 <= self.min_agreement <= 1:
            raise PipelineError(f"quant.min_agreement={self.min_agreement} is a share of images: use a number from 0 to 1, e.g. 0.97")
        for name, low in (("qat_epochs", 0), ("qat_batch_size", 1), ("max_float_layers", 0), ("sensitivity_images", 1)):
            at_least(f"quant.{name}", getattr(self, name), low)
        if not self.qat_lr > 0:
            raise PipelineError(f"quant.qat_lr={self.qat_lr} must be a positive learning rate, e.g. 1e-5")

    def nncf_kwargs(self, nncf, subset_size: int, saturates: bool) -> dict:
        """NNCF's quantize arguments for these settings; `saturates`: the board's int8 sums can saturate
        (edge.isa.saturates of board.isa)."""
        # auto unresolved (no model named): the swish models' choice; the preset was checked in __post_init__
        presets = {"auto": nncf.QuantizationPreset.MIXED, "mixed": nncf.QuantizationPreset.MIXED,
                   "performance": nncf.QuantizationPreset.PERFORMANCE}
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix, QuantizationParameters

        # x86 without VNNI sums u8×s8 pairs in 16 bits: 7-bit weights on every layer leave the headroom.
        overflow_fix = OverflowFix.ENABLE if saturates else OverflowFix.DISABLE
        per_tensor = QuantizationParameters(per_channel=False) if self.activation_scales == "per-tensor" else None
        return {
            "preset": presets[self.preset],
            "subset_size": subset_size,
            "fast_bias_correction": self.bias_correction != "full",
            "advanced_parameters": AdvancedQuantizationParameters(
                overflow_fix=overflow_fix, disable_bias_correction=self.bias_correction == "off",
                activations_quantization_params=per_tensor),
        }

    def per_tensor_activations(self) -> "QuantConfig":
        """These settings for a quantizer or runtime that takes one activation scale per tensor only (the targets say
        which: their quantize() and check())."""
        return dataclasses.replace(self, activation_scales="per-tensor")


@dataclass(frozen=True)
class BoardConfig:
    """The board the int8 artifact is made for. `isa`: its int8 arithmetic (edge/isa.py), or auto = this machine's
    (make_config resolves it: the one place the ISA is held, which the quantizer, the gate and the report read).
    `emulate`: judge int8 on the board's CPU emulated by QEMU (pipeline.emulation): auto where that costs seconds (an
    x86 board, qemu-x86_64 installed), on also for Arm boards (and an error where it cannot), off never."""

    isa: str = "auto"
    emulate: str = "auto"

    def __post_init__(self):
        if self.isa != "auto":
            int8_isa.check(self.isa)
        one_of("board.emulate", self.emulate, ("auto", "on", "off"))



@dataclass(frozen=True)
class CameraConfig:
    """What the camera program on the board opens by default (overridable there with --source)."""

    source: str = "0"  # camera index, /dev/videoN, GStreamer pipeline, URL, video file or image folder
    width: int = 1280
    height: int = 720
    fps: int = 30

    def __post_init__(self):
        for name in ("width", "height", "fps"):
            at_least(f"camera.{name}", getattr(self, name), 1)


@dataclass(frozen=True)
class DeployConfig:
    model: str = "lite0"
    target: str = DEFAULT_TARGET
    data: str | None = None  # labelled folder; None = the small embedded sample
    calib: str | None = None  # folder, or "random" said explicitly; None = DATA
    train_data: str | None = None  # labelled folder QUANT=qat trains on; None = DATA
    calib_size: int = 300
    weights: str | None = None  # file, "random", or None = the model table's pretrained source
    num_classes: int | None = None
    image_size: int | None = None  # None = the model table's resolution
    max_drop: float = 1.0  # allowed int8 top-1 drop, percentage points
    # The gate fails when int8's top-1 agreement with float is, with 95 % confidence, below this on any image set,
    # labels or not. Real int8 agreed with float on 0.98-0.99 of 1000 ImageNet photos and, at the lowest we measured,
    # 0.73 of deliberately hard crops (README), so a real model fails it by chance less than 1 time in 40; random
    # weights agreed on 0.45 (tiny b0, 4 classes, 40 images: 31-60 %) and 0.00 (b1, 1000 classes: 0-19 %). 0: off.
    agreement_floor: float = 0.7
    strict: bool = False  # an inconclusive verdict (too few images to resolve MAX_DROP) fails too
    max_images: int | None = None  # cap on validation images
    threads: int = 0  # 0 = the runtime's default
    precision: str = "f32"  # the runtime's inference precision hint for float and int8, where it takes one
    warmup: int = 10
    runs: int = 100
    seed: int = 0
    out: str | None = None
    quant: QuantConfig = field(default_factory=QuantConfig)
    board: BoardConfig = field(default_factory=BoardConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    settings: object = None  # the target's own settings (Target.settings, a frozen dataclass); None = its defaults

    def __post_init__(self):
        get_spec(self.model)
        if self.target not in TARGETS:  # the same line as targets.get_target's
            raise PipelineError(f"unknown target {self.target!r}; valid targets: {', '.join(sorted(TARGETS))}")
        if self.settings is None:
            object.__setattr__(self, "settings", get_target(self.target).settings())
        one_of("precision", self.precision, PRECISIONS)
        if not 0 <= self.agreement_floor <= 1:
            raise PipelineError(f"agreement_floor={self.agreement_floor} is a share of images: use a value from 0 to 1")
        for name, low, optional in (("calib_size", 1, False), ("num_classes", 1, True), ("image_size", 32, True),
                                    ("max_images", 1, True), ("threads", 0, False), ("warmup", 0, False), ("runs", 1, False)):
            at_least(name, getattr(self, name), low, optional)
        if self.quant.mode == "qat" and self.quant.qat_data == "calibration" and self.calib == "random":
            raise PipelineError("quant.qat_data=calibration distils on the calibration images, and CALIB=random has none: "
                                "pass CALIB=<a folder of real images>")

    @property
    def quant_name(self) -> str:
        return f"int8-{self.quant.mode}"

    def ptq_settings(self) -> dict:
        """The settings the PTQ artifact depends on (QAT and auto settings do not redo it)."""
        q = asdict(self.quant)
        return {**{k: q[k] for k in ("preset", "bias_correction", "activation_scales")}, "isa": self.board.isa,
                "settings": asdict(self.settings)}

    @property
    def run_dir(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / f"{self.model}-{self.target}-{self.quant.mode}"


def _coerce(value, typ):
    """Turn a KEY=value string into the dataclass field's type."""
    if isinstance(value, str):
        origin_args = typing.get_args(typ)
        if value.lower() in ("none", "null", "") and type(None) in origin_args:
            return None
        base = next((a for a in origin_args if a is not type(None)), typ) if origin_args else typ
        if base is bool:
            return value.lower() in ("1", "true", "yes", "on")
        if base in (int, float):
            try:
                return base(value)
            except ValueError:
                raise PipelineError(f"{value!r} is not a valid {base.__name__}") from None
    return value


def override(cfg, values: dict):
    """A copy of `cfg` with `values` applied; keys may be dotted (`quant.preset`)."""
    hints = typing.get_type_hints(type(cfg))
    names = {f.name for f in dataclasses.fields(cfg)}
    if not names and values:
        raise PipelineError(f"unknown setting {next(iter(values))!r}: this target has no settings of its own")
    changes, nested = {}, {}
    for key, value in values.items():
        key = key.lower().replace("-", "_")
        head, _, rest = key.partition(".")
        if head not in names:
            raise PipelineError(f"unknown setting {key!r}; valid: {', '.join(sorted(names))}")
        if rest:
            nested.setdefault(head, {})[rest] = value
        elif isinstance(value, dict) and dataclasses.is_dataclass(getattr(cfg, head)):
            nested.setdefault(head, {}).update(value)
        else:
            changes[head] = _coerce(value, hints[head])
    for head, sub in nested.items():
        changes[head] = override(getattr(cfg, head), sub)
    return dataclasses.replace(cfg, **changes)


def load_profile(target: str) -> dict:
    path = PROFILES / f"{target}.yaml"
    if not path.exists():
        return {}
    return yaml.safe_load(path.read_text()) or {}


def make_config(target: str, values: dict) -> DeployConfig:
    """Defaults <- the target's profile YAML <- explicit values (CLI flags and KEY=value)."""
    cfg = override(DeployConfig(target=target), load_profile(target))
    if values.get("quant.isa") is not None:  # the ISA is held once, by the board
        raise PipelineError("quant.isa follows the board: set board.isa instead (e.g. SET=board.isa=avx2)")
    if values.get("quant.ort_calibration") is not None:  # a target's own setting now
        raise PipelineError("quant.ort_calibration is a target's own setting now: SET=settings.calibration=...")
    cfg = override(cfg, {k: v for k, v in values.items() if v is not None})
    get_target(target).check(cfg)  # what this target's board or quantizer cannot honour, said now
    # The quantizer follows the board's int8 arithmetic (see QuantConfig.nncf_kwargs and Target.recipe).
    board = dataclasses.replace(cfg.board, isa=int8_isa.detect() if cfg.board.isa == "auto" else cfg.board.isa)
    quant = dataclasses.replace(cfg.quant, preset=resolved_preset(cfg.quant.preset, cfg.model))
    if board.emulate == "on":  # an emulator that cannot run is said now, before any model work
        from pipeline import emulation

        emulation.choose(board.isa, "on")
    return dataclasses.replace(cfg, quant=quant, board=board)


def resolved_preset(preset: str, model: str) -> str:
    """auto -> MIXED (asymmetric activations) for swish models, whose negative tail a symmetric grid
    would waste half its range on; PERFORMANCE (symmetric) for ReLU6 models (Lite), whose activations
    are non-negative anyway: on Lite0 it agreed with float on 4.5-4.7 points more crops on both
    halves of tools/measure_fidelity.py's photos, with full bias correction."""
    if preset != "auto":
        return preset
    return "performance" if get_spec(model).activation == "relu6" else "mixed"


@dataclass(frozen=True)
class TrainConfig:
    """`python -m pipeline train`: fine-tune (or train from scratch) on a labelled folder."""

    model: str = "b0"
    data: str = ""
    val: str | None = None  # a labelled folder; None = hold out `val_split` of DATA
    val_split: float = 0.2
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    optimizer: str = "adamw"  # one of OPTIMIZERS
    freeze_backbone: bool = False
    weights: str | None = None  # start point: None = pretrained, "random" = from scratch, or a file
    image_size: int | None = None
    out: str | None = None
    resume: bool = False
    seed: int = 0

    def __post_init__(self):
        get_spec(self.model)
        one_of("optimizer", self.optimizer, OPTIMIZERS)
        for name, low in (("epochs", 1), ("batch_size", 1), ("weight_decay", 0)):
            at_least(name, getattr(self, name), low)
        if not self.lr > 0:
            raise PipelineError(f"lr={self.lr} must be a positive learning rate, e.g. 1e-3")
        if not 0 < self.val_split < 1:
            raise PipelineError(f"val_split={self.val_split} is a share of DATA: use a number between 0 and 1, e.g. 0.2")

    @property
    def run_dir(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / f"{self.model}-train"

"""What B0's int8 time is made of: the bench's B0 beside B0 rebuilt with ReLU6 for its swish, without its
squeeze-excite blocks, and both (Lite0's ops, about its multiply-adds), each quantized as the target quantizes B0 and
timed against Lite0's int8 on the same runtime in paired rounds. Where the Lite0-ops row runs at Lite0's speed, the
runtime's int8 kernels do B0's multiply-adds as fast as Lite0's, and the other rows say what its swish and its
squeeze-excite cost.

The rebuilt models keep the bench's B0 weights and BatchNorm as they are (cost only: they classify nothing).
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from calibration import cache
from pipeline.bench.engines import paired_speedup
from pipeline.config import resolved_preset


@dataclass(frozen=True)
class Variant:
    name: str
    relu6_for_swish: bool
    without_squeeze_excite: bool

    @property
    def is_b0(self) -> bool:
        return not (self.relu6_for_swish or self.without_squeeze_excite)


VARIANTS = (
    Variant("b0", False, False),  # the bench's own B0 artifacts, as its latency tables time them
    Variant("b0 without squeeze-excite", False, True),
    Variant("b0 with ReLU6 for swish", True, False),
    Variant("b0 with ReLU6, without squeeze-excite (Lite0's ops)", True, True),
)
RUNTIMES_WITH_PROFILES = ("openvino", "onnx")  # the targets whose B-model goals the split explains


def rebuilt(model: nn.Module, variant: Variant) -> nn.Module:
    """A copy of `model` with the variant's changes; `model` itself is left as it is."""
    from torchvision.ops.misc import SqueezeExcitation

    copied = copy.deepcopy(model)
    for module in list(copied.modules()):
        for name, child in list(module.named_children()):
            if variant.relu6_for_swish and isinstance(child, nn.SiLU):
                setattr(module, name, nn.ReLU6())
            elif variant.without_squeeze_excite and isinstance(child, SqueezeExcitation):
                setattr(module, name, nn.Identity())
    return copied.eval()


def int8_artifact(deployed: dict, variant: Variant, model: nn.Module, calibration: np.ndarray, folder: Path) -> Path:
    """The variant's int8 artifact: the bench's own for B0, else `model` (the bench's B0) rebuilt, converted and
    quantized as B0's deploy made B0's (its target, settings, board and `calibration` images)."""
    if variant.is_b0:
        return deployed["int8"]
    ctx, model = deployed["deploy"], rebuilt(model, variant)
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = ctx.target.convert_float(model, torch.from_numpy(calibration[:1]), folder / "float")
    quant = ctx.cfg.quant
    if variant.relu6_for_swish:  # quantized as a ReLU6 model is: the preset make_config gives Lite0 (symmetric)
        quant = dataclasses.replace(quant, preset=resolved_preset("auto", "lite0"))
    return ctx.target.quantize(model, fp32, calibration, quant, folder / "int8", isa=ctx.cfg.board.isa, settings=ctx.cfg.settings)


def cost_split(b0: dict, lite0: dict, threads: int, rounds: int, seconds: float, out: Path, log,
               targets: tuple[str, ...] = RUNTIMES_WITH_PROFILES) -> dict:
    """Per runtime, each variant's int8 time over Lite0's int8 time, the median of paired rounds.

    `b0`, `lite0`: the bench's deployments per target (pipeline.bench.run.deploy_model)."""
    split = {}
    for target_name in [t for t in targets if t in b0 and t in lite0]:
        deployed = b0[target_name]
        target, model = deployed["deploy"].target, deployed["deploy"].torch_model(deployed["model"])  # read once per target
        calibration = cache.batch(deployed["calibration_folder"])
        lite0_int8 = target.runner(lite0[target_name]["int8"], threads, "f32").infer
        size = deployed["deploy"].preprocess.image_size  # Lite0's too (224)
        sample = np.zeros((1, 3, size, size), np.float32)
        rows = {}
        for variant in VARIANTS:
            folder = out / f"{target_name}-{variant.relu6_for_swish:d}{variant.without_squeeze_excite:d}"
            int8 = target.runner(int8_artifact(deployed, variant, model, calibration, folder), threads, "f32").infer
            # paired_speedup(a, b): a's p50 over b's, the median of the rounds
            figure = paired_speedup(int8, lite0_int8, sample, rounds, seconds)
            rows[variant.name] = {"int8_time_over_lite0_int8": figure}
            log(f"[bench] {target.device_runtime} {variant.name}: int8 {figure['ratio']:.2f}x lite0 int8's time")
        split[target.device_runtime] = rows
    return split

"""What B0's int8 time is made of: B0 rebuilt with ReLU6 for its swish and without its squeeze-excite blocks, each
alone and both together, quantized and timed as the target makes and runs B0, against Lite0's int8 on the same
runtime. B0 with ReLU6 and no squeeze-excite has Lite0's ops and about its multiply-adds: where that row runs at
Lite0's speed, the runtime's int8 kernels do B0's multiply-adds as fast as Lite0's, and what B0 costs beyond it is
its swish and its squeeze-excite, each row says how much.

The rebuilt models keep B0's (random) weights; their BatchNorm statistics are estimated again on the calibration
images, as a change of activation moves them. Cost only: the rebuilt models are not B0 and classify nothing.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.bench.engines import paired_speedup
from pipeline.config import resolved_preset
from pipeline.model.load import reestimate_batchnorm
from targets import get_target


@dataclass(frozen=True)
class Variant:
    name: str
    relu6_for_swish: bool
    without_squeeze_excite: bool


VARIANTS = (
    Variant("b0", False, False),
    Variant("b0 without squeeze-excite", False, True),
    Variant("b0 with ReLU6 for swish", True, False),
    Variant("b0 with ReLU6, without squeeze-excite (Lite0's ops)", True, True),
)
RUNTIMES_WITH_PROFILES = ("openvino", "onnx")  # the targets whose B-model goals the split explains


def rebuilt(model: nn.Module, variant: Variant, calibration: np.ndarray) -> nn.Module:
    """A copy of `model` with the variant's changes, its BatchNorm statistics estimated on `calibration`."""
    from torchvision.ops.misc import SqueezeExcitation

    copied = copy.deepcopy(model)
    for module in list(copied.modules()):
        for name, child in list(module.named_children()):
            if variant.relu6_for_swish and isinstance(child, nn.SiLU):
                setattr(module, name, nn.ReLU6())
            elif variant.without_squeeze_excite and isinstance(child, SqueezeExcitation):
                setattr(module, name, nn.Identity())
    batches = [calibration[i:i + 8] for i in range(0, len(calibration), 8)]
    return reestimate_batchnorm(copied, batches)


def build(ctx, model: nn.Module, variant: Variant, calibration: np.ndarray, folder: Path) -> tuple[Path, Path]:
    """(fp32, int8) artifacts of the variant, made as B0's deploy `ctx` made B0's: its target, settings and board."""
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = ctx.target.convert_float(model, torch.from_numpy(calibration[:1]), folder / "float")
    # B0's own preset (make_config's MIXED for swish); a ReLU6 variant gets the one make_config gives Lite0
    quant = ctx.cfg.quant
    if variant.relu6_for_swish:
        quant = dataclasses.replace(quant, preset=resolved_preset("auto", "lite0"))
    int8 = ctx.target.quantize(model, fp32, calibration, quant, folder / "int8", isa=ctx.cfg.board.isa, settings=ctx.cfg.settings)
    return fp32, int8


def cost_split(b0: dict, lite0: dict, threads: int, rounds: int, seconds: float, out: Path, log,
               targets: tuple[str, ...] = RUNTIMES_WITH_PROFILES) -> dict:
    """Per runtime, each variant's int8 against Lite0's int8 and against its own fp32, in paired rounds.

    `b0`, `lite0`: the bench's deployments per target (pipeline.bench.run.deploy_model)."""
    split = {}
    for target_name in [t for t in targets if t in b0 and t in lite0]:
        target, deployed = get_target(target_name), b0[target_name]
        ctx, calibration = deployed["deploy"], deployed["calibration_batch"]
        model = ctx.torch_model(deployed["model"])
        lite0_int8 = target.runner(lite0[target_name]["int8"], threads, "f32").infer
        sample = calibration[:1]
        rows = {}
        for variant in VARIANTS:
            folder = out / f"{target_name}-{variant.relu6_for_swish:d}{variant.without_squeeze_excite:d}"
            fp32, int8 = build(ctx, rebuilt(model, variant, calibration), variant, calibration, folder)
            fp32_run, int8_run = (target.runner(a, threads, "f32").infer for a in (fp32, int8))
            # paired_speedup(a, b): a's p50 over b's, median of the rounds
            rows[variant.name] = {"int8_over_lite0_int8": paired_speedup(int8_run, lite0_int8, sample, rounds, seconds),
                                  "int8_over_own_fp32": paired_speedup(fp32_run, int8_run, sample, rounds, seconds)}
            log(f"[bench] {target.device_runtime} {variant.name}: int8 {rows[variant.name]['int8_over_lite0_int8']['ratio']:.2f}x "
                f"lite0 int8's time, {rows[variant.name]['int8_over_own_fp32']['ratio']:.2f}x faster than its fp32")
        split[target.device_runtime] = rows
    return split


"""Stage `float`: the float model converted to the target's float artifact (Target.convert_float)."""
from __future__ import annotations

from pathlib import Path

import torch

NEEDS = ("model",)


def key(ctx, inputs) -> dict:
    return {"target": ctx.cfg.target, "model": inputs["model"].digest, "preprocess": ctx.preprocess.to_dict()}


def run(ctx, inputs, out: Path) -> dict:
    model = ctx.torch_model(inputs["model"])
    example = torch.zeros(1, 3, ctx.preprocess.image_size, ctx.preprocess.image_size)
    return {"artifact": ctx.target.convert_float(model, example, out / "model").name}

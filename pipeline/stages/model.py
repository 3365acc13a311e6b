"""Stage `model`: the float model with its weights (pretrained, a checkpoint, or random by name), saved as model.pt."""
from __future__ import annotations

from pathlib import Path

import torch

from pipeline.model.load import load, save_checkpoint
from pipeline.runfolder import sha256

NEEDS = ()


def key(ctx, inputs) -> dict:
    cfg, weights = ctx.cfg, ctx.cfg.weights
    weights_id = weights if weights in (None, "random") else sha256(Path(weights)) if Path(weights).is_file() else weights
    return {"model": ctx.spec.name, "weights": weights_id, "num_classes": cfg.num_classes, "seed": cfg.seed}


def run(ctx, inputs, out: Path) -> dict:
    torch.manual_seed(ctx.cfg.seed)
    loaded = load(ctx.spec, ctx.cfg.weights, ctx.cfg.num_classes)
    save_checkpoint(out / "model.pt", ctx.spec, loaded.model, loaded.labels)
    return {"weights": loaded.weights, "num_classes": len(loaded.labels)}

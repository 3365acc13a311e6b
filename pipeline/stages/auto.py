"""Stage `auto` (QUANT=auto): PTQ, then the most sensitive layers back to float until MAX_DROP holds
(pipeline.quant.accuracy_aware)."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from calibration import cache
from pipeline.quant.accuracy_aware import Recovery
from pipeline.data.folders import fingerprint, list_images
from pipeline.scores import accuracy, torch_infer
from targets.fold import fold_batchnorm

NEEDS = ("model", "float", "int8", "calibration")


def key(ctx, inputs) -> dict:
    cfg = ctx.cfg
    return {"int8": inputs["int8"].digest, "data": fingerprint(list_images(ctx.data_dir)), "quant": asdict(cfg.quant),
            "isa": cfg.board.isa, "settings": [cfg.max_drop, cfg.max_images, cfg.threads, cfg.precision, cfg.runs]}


def run(ctx, inputs, out: Path) -> dict:
    cfg = ctx.cfg
    model, labels = ctx.torch_model(inputs["model"], with_labels=True)
    calib_dir = inputs["calibration"].folder
    calib = cache.batch(calib_dir)
    x, y = ctx.validation_arrays(labels, cache.files(calib_dir))
    infer = torch_infer(model)
    float_top1 = accuracy(np.concatenate([infer(x[i : i + 32]) for i in range(0, len(x), 32)]), y)["top1"]
    recovery = Recovery(
        ctx.target, model, fold_batchnorm(model, torch.from_numpy(calib[:1])), inputs["float"].artifact, inputs["int8"].artifact,
        calib, cfg.quant, cfg.board.isa, x, y, float_top1, cfg.max_drop, ctx.host_threads, cfg.precision, cfg.runs, ctx.log,
    )
    result = recovery.run(out / "model")
    return {**result, "ops": ctx.target.describe(out / result["artifact"])}

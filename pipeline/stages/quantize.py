"""Stage `int8`: post-training quantization of the float artifact to the target's int8 artifact (Target.quantize), for
the board's int8 ISA (board.isa) with the target's own settings."""
from __future__ import annotations

from pathlib import Path

from calibration import cache

NEEDS = ("model", "float", "calibration")


def key(ctx, inputs) -> dict:
    return {"target": ctx.cfg.target, "float": inputs["float"].digest, "calibration": inputs["calibration"].digest,
            "quant": ctx.cfg.ptq_settings()}


def run(ctx, inputs, out: Path) -> dict:
    model, calib = ctx.torch_model(inputs["model"]), inputs["calibration"]
    batch = cache.batch(calib.folder)
    ctx.log(f"[int8] post-training quantization with {len(batch)} calibration images from {calib.result['source']}")
    path = ctx.target.quantize(model, inputs["float"].artifact, batch, ctx.cfg.quant, out / "model", isa=ctx.cfg.board.isa,
                               settings=ctx.cfg.settings)
    return {"artifact": path.name, "ops": ctx.target.describe(path)}

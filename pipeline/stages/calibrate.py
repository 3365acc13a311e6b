"""Stage `calibration`: the calibration set chosen and preprocessed as validation preprocesses (calibration/), from CALIB,
else DATA, else the embedded sample's calibration photos; random data only when CALIB=random says so."""
from __future__ import annotations

from pathlib import Path

import calibration
from calibration import sets
from calibration import cache
from pipeline.data.folders import check_folder, fingerprint, list_images
from pipeline.data.sample import calibration_folder
from pipeline.stages.context import progress

NEEDS = ()


def source(ctx) -> str:
    if ctx.data_is_sample and not ctx.cfg.calib:
        return str(calibration_folder(Path("runs") / "_sample_calibration"))
    return ctx.cfg.calib or str(ctx.data_dir)


def key(ctx, inputs) -> dict:
    src = source(ctx)
    files = "random" if src == calibration.RANDOM else fingerprint(list_images(check_folder(src, "CALIB")))
    return {"source": src, "files": files, "n": ctx.cfg.calib_size, "seed": ctx.cfg.seed, "preprocess": ctx.preprocess.to_dict()}


def run(ctx, inputs, out: Path) -> dict:
    return cache.save(sets.build(source(ctx), ctx.cfg.calib_size, ctx.preprocess, ctx.cfg.seed, progress), out)

"""Stage `qat` (QUANT=qat): NNCF quantization-aware training from the PTQ initialisation, exported as PTQ exports.

Under torchrun, rank 0 runs the chain and tells the other ranks whether there is training to join (`follow`); they
train beside it and rank 0 alone writes.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from calibration import cache
from pipeline import PipelineError
from pipeline.data.folders import fingerprint, list_images
from pipeline.scores import rows_not_among

NEEDS = ("model", "calibration")


@dataclass(frozen=True)
class TrainingSet:
    """What QUANT=qat trains on: a torch dataset, the files behind it and the folder they come from."""

    dataset: object
    files: list[str]
    source: str
    labelled: bool = True
    validated: int = 0  # how many of the files are also validation images (by content)


def key(ctx, inputs) -> dict:
    calib = inputs["calibration"]
    trains_on = calib.digest if ctx.cfg.quant.qat_data == "calibration" else fingerprint(list_images(ctx.train_folder()))
    return {"target": ctx.cfg.target, "model": inputs["model"].digest, "calibration": calib.digest, "train": trains_on,
            "quant": asdict(ctx.cfg.quant), "isa": ctx.cfg.board.isa, "preprocess": ctx.preprocess.to_dict()}


def run(ctx, inputs, out: Path) -> dict:
    ctx.world.announce(True)
    try:
        folded, qmodel, history, trained, calib = train(ctx, inputs)
        example = torch.from_numpy(calib[:1])
        path = ctx.target.export_qat(qmodel, folded, example, calib, ctx.cfg.quant, out / "model", isa=ctx.cfg.board.isa,
                                     settings=ctx.cfg.settings)
    finally:
        ctx.world.announce(False)  # trained, or failed: the other ranks stop waiting
    (out / "train_files.json").write_text(json.dumps(trained.files))
    return {"artifact": path.name, "ops": ctx.target.describe(path), "history": history,
            "train_images": len(trained.files), "train_folder": trained.source, "train_split": ctx.splits_data,
            "labels": trained.labelled, "validation_images_trained_on": trained.validated,
            "trained_on_validation_data": trained.validated > 0}


def train(ctx, inputs):
    from pipeline.quant import qat

    qat.check_toolchain(ctx.log)
    model, labels = ctx.torch_model(inputs["model"], with_labels=True)
    calib_dir = inputs["calibration"].folder
    trained = training_set(ctx, labels, inputs["calibration"])
    calib = cache.batch(calib_dir)
    q = ctx.cfg.quant
    how = "cross-entropy + distillation" if trained.labelled else "distillation from the float model alone, no labels"
    ctx.log(f"[qat] PTQ initialisation on {len(calib)} calibration images, then {q.qat_epochs} epoch(s) "
            f"at lr {q.qat_lr:g} on {len(trained.files)} images from {trained.source} ({how})")
    folded, qmodel = qat.prepare(model, calib, q, ctx.target.qat_preset, ctx.cfg.board.isa)
    history = qat.finetune(qmodel, folded, trained.dataset, q, ctx.log)
    return folded, qmodel, history, trained, calib


def training_set(ctx, labels: list[str], calib_stage) -> TrainingSet:
    from pipeline.quant import qat
    from pipeline.train.command import FolderDataset

    calib_files = cache.files(calib_stage.folder)
    if ctx.cfg.quant.qat_data == "calibration":  # never random: DeployConfig refuses that
        dataset = qat.Unlabelled(cache.batch(calib_stage.folder), ctx.cfg.quant.qat_seed)
        files, source = calib_files, calib_stage.result["source"]
    else:
        samples = ctx.train_samples(labels)
        if not samples:
            raise PipelineError(f"no labelled images in {ctx.train_folder()} for QAT; pass TRAIN_DATA=folder (one subfolder "
                                "per class), or SET=quant.qat_data=calibration to distil on the calibration images without labels")
        dataset, source = FolderDataset(samples, ctx.preprocess, train=True), str(ctx.train_folder())
        files = [str(s.path) for s in samples]
    validated = [s.path for s in ctx.validation_samples(labels, calib_files)]
    among = len(files) - len(rows_not_among(files, validated))  # by content: a copy in another folder counts
    return TrainingSet(dataset, files, source, labelled=ctx.cfg.quant.qat_data == "labelled", validated=among)


def follow(ctx, model_stage, calib_stage) -> None:
    """A torchrun rank other than 0: wait for rank 0's word, then train beside it (rank 0 alone writes)."""
    if ctx.world.wait():
        train(ctx, {"model": model_stage, "calibration": calib_stage})

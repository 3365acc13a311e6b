"""Stage `validate`: float and int8 run in the target's runtime on DATA's labelled images. Accuracy and agreement are
judged in the board's int8 arithmetic (pipeline.stages.judge: emulated, unsaturated or this host's own); latency is
timed as this host's runtime runs the artifacts; the artifacts that take the camera's pixels are checked against
the host's preprocessing."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import calibration
from calibration import sets
from calibration import cache
from edge import metrics
from edge.preprocess import read_images
from pipeline import PipelineError
from pipeline import scores as val
from pipeline.data.folders import fingerprint, list_images
from pipeline.stages import judge
from pipeline.stages.context import progress

NEEDS = ("model", "float", "int8", "calibration", "shipped")
# The camera-input check compares two forms of the same artifact, which differ only in float rounding of the
# normalisation: a few hundred images show any real difference (a wrong constant moves every image).
CAMERA_CHECK_IMAGES = 256


def key(ctx, inputs) -> dict:
    cfg = ctx.cfg
    return {"model": inputs["model"].digest, "float": inputs["float"].digest, "int8": inputs["shipped"].digest,
            "ptq": inputs["int8"].digest, "calibration": inputs["calibration"].digest, "data": fingerprint(list_images(ctx.data_dir)),
            "settings": [cfg.threads, cfg.precision, cfg.warmup, cfg.runs, cfg.max_images, cfg.calib],
            "arithmetic": judge.arithmetic(ctx).to_dict(), "split": ctx.splits_data}


def run(ctx, inputs, out: Path) -> dict:
    model, labels = ctx.torch_model(inputs["model"], with_labels=True)
    calib_dir = inputs["calibration"].folder
    samples = ctx.validation_samples(labels, cache.files(calib_dir))
    (out / "files.json").write_text(json.dumps([str(s.path) for s in samples]))
    artifacts = {"float": inputs["float"].artifact, "int8": inputs["shipped"].artifact}
    if inputs["shipped"] is not inputs["int8"]:  # QAT / auto: the PTQ model it started from, for comparison
        artifacts["ptq"] = inputs["int8"].artifact
    runners = {k: judge.runner(ctx, a, "time" if k == "float" else "judge") for k, a in artifacts.items()}
    classified = val.classify_all(samples, ctx.preprocess, model, runners, progress)
    # timed as this host's runtime runs them: where int8 was judged emulated or unsaturated, fused again
    timed = {k: judge.runner(ctx, a) if judge.arithmetic(ctx).kind != "host" and k != "float" else runners[k] for k, a in artifacts.items()}
    result = measure(ctx, classified, runners, timed)
    result["agreement_unlabelled"] = unlabelled_agreement(ctx, inputs, model, runners["int8"], samples)
    result["field_agreement"] = held_out_agreement(ctx, model, runners["int8"])
    result["camera_input"] = camera_input(ctx, out, artifacts, runners, samples, cache.files(calib_dir), inputs["calibration"].result)
    result["arithmetic"] = judge.arithmetic(ctx).to_dict()
    # where the target can compare its int8 and float graphs layer by layer (None elsewhere)
    result["layer_errors"] = ctx.target.layer_errors(artifacts["float"], artifacts["int8"], cache.batch(calib_dir)[:4])
    np.savez_compressed(out / "logits.npz", labels=classified["labels"], **classified["logits"])
    return result


def measure(ctx, classified: dict, runners: dict, timed: dict) -> dict:
    """Accuracy and fidelity from the classified validation images; latency from `timed`."""
    cfg, logits, y = ctx.cfg, classified["logits"], classified["labels"]
    if len(y) == 0:
        raise PipelineError(f"all {len(classified['skipped'])} images in {ctx.data_dir} are unreadable; check DATA")
    sample = ctx.preprocess.blank()
    ctx.log(f"[validate] latency at batch 1: {cfg.warmup} warm-up + {cfg.runs} timed runs each")
    result = {
        "images": int(len(y)),
        "skipped": len(classified["skipped"]),
        "skipped_files": classified["skipped"][:50],
        "accuracy": {
            "float": val.accuracy(logits["torch"], y),
            "float_artifact": val.accuracy(logits["float"], y),
            "int8": val.accuracy(logits["int8"], y),
            "top1_agreement": val.agreement(logits["int8"], logits["torch"]),
        },
        "paired": val.paired_counts(logits["torch"], logits["int8"], y),
        "agree": metrics.agreeing(logits["torch"], logits["int8"]),
        "float_parity": val.parity(logits["float"], logits["torch"]),
        "latency_ms": {k: val.latency(r, sample, cfg.warmup, cfg.runs) for k, r in timed.items() if k != "ptq"},
        "runtime": {"int8": runners["int8"].runtime, "float": runners["float"].runtime, "threads": runners["int8"].threads},
        "executed_precisions": timed["int8"].executed_precisions(),
    }
    if "ptq" in runners:
        result["accuracy"]["ptq"] = val.accuracy(logits["ptq"], y)
        result["accuracy"]["ptq_top1_agreement"] = val.agreement(logits["ptq"], logits["torch"])
        result["latency_ms"]["ptq"] = val.latency(timed["ptq"], sample, cfg.warmup, cfg.runs)
    return result


def camera_input(ctx, out: Path, artifacts: dict, runners: dict, samples, calib_files: list[str], calib_result: dict) -> dict | None:
    """The float and int8 artifacts made to take the camera's pixels (`Target.with_pixel_input`: what the bundle
    ships), each against itself fed the host's preprocessing, on the validation and calibration photos; None
    where the target leaves preprocessing to the host. One artifact against another form of itself: this host's
    arithmetic is as good a judge as the board's, so an emulated board is not emulated here."""
    pre = ctx.preprocess
    made = {k: ctx.target.with_pixel_input(artifacts[k], pre, out / f"{k}_pixels") for k in ("float", "int8")}
    if None in made.values():
        return None
    purpose = {"float": "time", "int8": "time" if judge.arithmetic(ctx).emulated else "judge"}
    host = {k: judge.runner(ctx, artifacts[k], purpose[k]) for k in made} if judge.arithmetic(ctx).emulated else runners
    board = {k: judge.runner(ctx, p, purpose[k]) for k, p in made.items()}
    for runner in board.values():
        runner.accept_pixels(pre)  # as the bundle's runner does (LiteRT's table; others hold it)
    calibrated = [] if calib_result.get("random") else calib_files
    paths = list(dict.fromkeys([str(s.path) for s in samples] + calibrated))[:CAMERA_CHECK_IMAGES]
    fed, normalised = {k: [] for k in made}, {k: [] for k in made}
    for _, img in read_images(progress(paths, desc="camera input check")):
        pixels = pre.pixels(img)
        for k in made:
            fed[k].append(board[k].infer(pixels[None]))
            normalised[k].append(host[k].infer(pre.normalize(pixels)[None]))
    timed = judge.runner(ctx, made["int8"]) if judge.arithmetic(ctx).kind == "unsaturated" else board["int8"]
    return {
        "artifacts": {k: p.name for k, p in made.items()},
        "images": len(fed["int8"]),
        "pixel_type": np.dtype(board["int8"].input_dtype).name,  # uint8; float32 where the runtime wants it
        "by": board["int8"].pixels_by,
        **{k: metrics.parity(np.concatenate(fed[k]), np.concatenate(normalised[k])) for k in made},
        "latency_ms": val.latency(timed, pre.blank(pixels=True), ctx.cfg.warmup, ctx.cfg.runs),
    }


def unlabelled_agreement(ctx, inputs, model, int8_runner, samples) -> dict:
    """Top-1 agreement of int8 with float on the calibration images that are not validation images.

    Agreement needs no labels, so these images tighten its interval (the default run has only 3
    labelled photos but 16 photos in all). They were used to calibrate, which the report says.
    """
    calib = inputs["calibration"]
    calib_files = cache.files(calib.folder)
    if calib.result.get("random") or not calib_files:
        return {"images": 0, "agree": 0, "source": None}
    # nor images QAT trained on: it learnt to agree with float there
    shipped = inputs["shipped"]
    trained = json.loads(shipped.path("train_files.json").read_text()) if ctx.cfg.quant.mode == "qat" else []
    rows = val.rows_not_among(calib_files, [s.path for s in samples] + trained)
    if not rows:
        return {"images": 0, "agree": 0, "source": calib.result["source"]}
    batch = cache.batch(calib.folder)[rows]
    agree, _ = agreeing(model, int8_runner, (x[None] for x in progress(batch, desc="agreement on calibration images")))
    return {"images": len(rows), "agree": agree, "source": calib.result["source"]}


def held_out_agreement(ctx, model, int8_runner) -> dict | None:
    """Top-1 agreement of int8 with float on the captured frames held out from calibration (CALIB = a folder
    make capture wrote): the board's own camera, no labels needed, never calibrated on. None for other CALIBs."""
    calib = ctx.cfg.calib
    split = sets.captured_split(calib) if calib and calib != calibration.RANDOM else None
    if not split or not split[1]:
        return None
    frames = read_images(progress(split[1], desc="held-out captured frames"))
    agree, images = agreeing(model, int8_runner, (ctx.preprocess(img)[None] for _, img in frames))
    ci95 = list(metrics.wilson(agree, images)) if images else None
    return {"source": str(calib), "images": images, "agree": agree, "agreement": agree / images if images else None,
            "ci95": ci95, "calibration_frames": len(split[0])}


def agreeing(model, int8_runner, tensors) -> tuple[int, int]:
    """(images where int8's top-1 is float's, images) over NCHW tensors of one image each."""
    reference, agree, images = val.torch_infer(model), 0, 0
    for x in tensors:
        agree += int(reference(x).argmax() == np.asarray(int8_runner.infer(x)).argmax())
        images += 1
    return agree, images

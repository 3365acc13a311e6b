"""Stage `report`: report.json and report.md from every stage's record, the MAX_DROP gate and, when it holds, the
bundle for the board (a cached step of its own: its README carries the report's words). Not cached itself: it
takes milliseconds and always says what the run folder holds now."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from pipeline.ship.bundle import write_bundle, write_tarball
from pipeline.stages.keys import code_digest
from pipeline.ship.report import write_report
from pipeline.data.sample import SAMPLE_PHOTOS

NEEDS = ("model", "calibration", "float", "int8", "shipped", "validate")


def run(ctx, inputs, out: Path | None = None) -> dict:
    """Report and gate; when the gate holds, the bundle for the board."""
    stages = {name: inputs[name] for name in ("model", "calibration", "float", "int8")}
    if ctx.cfg.quant.mode != "ptq":
        stages[ctx.cfg.quant.mode] = inputs["shipped"]
    stages["validate"] = inputs["validate"]
    report = write_report(ctx.cfg, ctx.spec, ctx.preprocess, stages, ctx.data_dir, ctx.data_is_sample, len(SAMPLE_PHOTOS), ctx.log)
    run_dir = ctx.cfg.run_dir
    if report["ships"]:
        bundle = write(ctx, inputs, report)
        write_tarball(bundle.folder, run_dir / "bundle.tar.gz")
        report["bundle"] = str(bundle.folder)
        ctx.log(f"[bundle] {bundle.folder} (and bundle.tar.gz): copy it to the board and run ./run.sh")
    else:
        stale = " (the bundle/ already there is from an earlier passing run and holds that run's model)" if (
            run_dir / "bundle").exists() else ""
        why = "the verdict is inconclusive and STRICT is set" if report["verdict"] == "inconclusive" else "the int8 model failed the gate"
        ctx.log(f"[bundle] not written: {why}{stale}")
    return report


def write(ctx, inputs, report: dict):
    """The bundle: the edge/ code, the artifacts that take the camera's pixels where the target makes them, labels,
    config and README (cached: the run folder's `bundle` stage)."""
    cfg, validation = ctx.cfg, inputs["validate"]
    key = {"validate": validation.digest, "code": code_digest("bundle", ctx.target),
           "settings": [asdict(cfg.camera), cfg.max_drop, cfg.threads, cfg.precision]}

    def work(tmp: Path) -> dict:
        _, labels = ctx.torch_model(inputs["model"], with_labels=True)
        int8, float_ = inputs["shipped"].artifact, inputs["float"].artifact
        if camera := validation.result.get("camera_input"):  # the artifacts that take the camera's pixels
            int8, float_ = (validation.path(camera["artifacts"][k]) for k in ("int8", "float"))
        write_bundle(tmp, cfg, ctx.spec, ctx.target, ctx.preprocess, labels, report, int8, float_, bool(camera))
        return {"runtime": ctx.target.device_runtime}

    return ctx.run.stage("bundle", key, work)

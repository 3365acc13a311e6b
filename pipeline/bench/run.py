"""`make bench`'s run: deploy each model for every installed CPU target, measure, write results and the report."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from edge.files import artifact_size_mb
from pipeline import PipelineError
from pipeline.bench.camera import camera_loop_rate
from pipeline.bench.cost_split import cost_split
from pipeline.bench.engines import (NO_TOOL, VENDOR_TOOLS, engines_for, interleaved_latency, machine_info, paired_speedup,
                                    vendor_crosscheck)
from pipeline.bench.profile import PROFILERS, op_profile
from pipeline.config import make_config
from pipeline.model.costs import cost
from pipeline.chain import Chain
from pipeline.stages import STAGES
from pipeline.model.family import FAMILY, get_spec
from pipeline.model.load import load
from edge.files import write_atomic
from targets import get_target


SCALING = tuple(f"b{i}" for i in range(8))


@dataclass(frozen=True)
class BenchConfig:
    models: tuple[str, ...] = ("lite0", "b0", "b1")
    data: str | None = None
    out: str = "bench"
    quick: bool = False
    threads: int = 0  # 0 = each runtime's default (one per core)
    runs: int = 300
    warmup: int = 30
    vendor_rounds: int = 5  # our timing and each runtime's own tool take turns this many times
    vendor_seconds: float = 2.0
    scaling_budget_s: float = 600.0  # stop climbing the B family once this much time is spent
    camera_frames: int = 300
    camera_rounds: int = 3  # each camera row run this many times; the report shows the median round

    def effective(self) -> "BenchConfig":
        if not self.quick:
            return self
        # as many rounds as the full run, each shorter: a median of three still followed one slow stretch of this VM
        return replace(self, runs=min(self.runs, 100), warmup=min(self.warmup, 10),
                       vendor_seconds=min(self.vendor_seconds, 1.0), scaling_budget_s=min(self.scaling_budget_s, 90.0))


def _weights_for(model: str, log) -> tuple[str | None, bool]:
    """Pretrained weights when they can be had (offline too), else random ones for latency only."""
    try:
        load(get_spec(model))
        return None, True
    except PipelineError as e:
        log(f"[bench] {model}: {e} -> random weights, latency only")
        return "random", False


def deploy_model(model: str, target: str, bc: BenchConfig, weights: str | None, real: bool, log) -> dict:
    cfg = make_config(target, {"model": model, "data": bc.data, "weights": weights, "out": str(Path(bc.out) / "runs" / f"{model}-{target}"),
                               "calib_size": "32" if bc.quick else "300", "runs": "20", "warmup": "5"})
    d = Chain(cfg, log)
    stages = {name: d.stage(name) for name in STAGES if name in ("model", "calibration", "float", "int8") or (real and name == "validate")}
    return {
        "deploy": d.ctx,
        "model": stages["model"],
        "float": stages["float"].artifact,
        "int8": stages["int8"].artifact,
        "calibration_folder": stages["calibration"].folder,
        "stage_seconds": {k: s.seconds for k, s in stages.items()},
        "validation": stages["validate"].result if real else None,
    }


def bench_targets() -> tuple[str, ...]:
    """The CPU targets whose converters and runtimes are installed here (openvino first: the camera loop uses it)."""
    return tuple(name for name in ("openvino", "onnx", "tflite") if get_target(name).is_available()[0])


def scaling(bc: BenchConfig, log) -> list[dict]:
    """Latency and size from b0 up the family until the time budget is spent (random weights: cost only)."""
    rows, t_start = [], time.monotonic()
    for model in SCALING:
        t0 = time.monotonic()
        cfg = make_config("openvino", {"model": model, "weights": "random", "calib_size": "8", "out": str(Path(bc.out) / "runs" / f"{model}-scaling")})
        chain = Chain(cfg, log)
        d = chain.ctx
        fp32 = chain.stage("float")
        int8 = chain.stage("int8")
        size = d.preprocess.image_size
        sample = np.zeros((1, 3, size, size), np.float32)
        runs = max(10, min(bc.runs, int(2000 / (1 + size / 100))))
        engines = {
            "fp32": ("", d.target.runner(fp32.artifact, bc.threads, "f32").infer),
            "int8": ("", d.target.runner(int8.artifact, bc.threads, "f32").infer),
        }
        lat = interleaved_latency(engines, sample, 5, runs // 4, block=5)
        rows.append({
            "model": model, "resolution": size, "gmacs": round(cost(d.spec, size).gmacs, 3),
            "published_gflops": d.spec.published_gflops,
            "fp32_p50_ms": lat["fp32"]["p50"], "int8_p50_ms": lat["int8"]["p50"],
            "fp32_mb": artifact_size_mb(fp32.artifact),
            "int8_mb": artifact_size_mb(int8.artifact),
            "seconds": round(time.monotonic() - t0, 1),
        })
        log(f"[bench] scaling {model}: fp32 {lat['fp32']['p50']:.1f} ms, int8 {lat['int8']['p50']:.1f} ms")
        if time.monotonic() - t_start > bc.scaling_budget_s and model != SCALING[-1]:
            log(f"[bench] scaling stops after {model}: the {bc.scaling_budget_s:.0f} s budget is spent")
            break
    return rows


def run_bench(bc: BenchConfig, log=print) -> dict:
    bc = bc.effective()
    out = Path(bc.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"config": asdict(bc), "machine": machine_info(bc.threads), "models": {}}
    kept = {}  # the deployments the B0 cost split builds on
    for model in bc.models:
        get_spec(model)
        weights, real = _weights_for(model, log)
        deployed = {t: deploy_model(model, t, bc, weights, real, log) for t in bench_targets()}
        if model in ("lite0", "b0"):
            kept[model] = deployed
        engines = engines_for(model, deployed, bc.threads)
        size = deployed["openvino"]["deploy"].preprocess.image_size
        log(f"[bench] {model}: interleaving {len(engines)} engines, {bc.runs} runs each")
        sample = np.zeros((1, 3, size, size), np.float32)
        latency = interleaved_latency(engines, sample, bc.warmup, bc.runs)
        base = latency["pytorch fp32"]["p50"]
        for name, row in latency.items():
            row["speedup_vs_pytorch"] = base / row["p50"]
            own = latency.get(name.rsplit(" ", 1)[0] + " fp32")
            row["speedup_vs_own_fp32"] = own["p50"] / row["p50"] if own else None
        for name in [n for n in engines if n.endswith(" int8")]:
            fp32 = name.rsplit(" ", 1)[0] + " fp32"
            latency[name]["speedup_vs_own_fp32_paired"] = paired_speedup(
                engines[fp32][1], engines[name][1], sample, bc.vendor_rounds, bc.vendor_seconds)
            log(f"[bench] {name} / fp32, paired: {latency[name]['speedup_vs_own_fp32_paired']['ratio']:.2f}")
        vendor = vendor_tools(model, deployed, bc, log)
        profiles = op_profiles(deployed, np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32), log)
        results["models"][model] = {
            "resolution": size,
            "weights": "pretrained" if real else "random (no offline weights): latency only",
            "latency_ms": latency,
            "vendor_tools": vendor,
            "accuracy": {t: _accuracy(d["validation"]) for t, d in deployed.items()} if real else None,
            "data": str(deployed["openvino"]["deploy"].data_dir) if real else None,
            "stage_seconds": {t: d["stage_seconds"] for t, d in deployed.items()},
            "op_profile": profiles,
        }
        log(f"[bench] {model}: camera loop on a generated video (openvino int8)")
        results["models"][model]["camera_loop"] = camera_loop_rate(
            deployed["openvino"], deployed["openvino"]["deploy"].preprocess, bc.threads, bc.camera_frames, bc.camera_rounds)
    if len(kept) == 2:
        log("[bench] b0's cost split: b0 rebuilt with ReLU6 and without squeeze-excite, against lite0 int8")
        results["b0_cost_split"] = cost_split(kept["b0"], kept["lite0"], bc.threads, bc.vendor_rounds, bc.vendor_seconds,
                                              out / "cost-split", log)
    results["scaling"] = scaling(bc, log)
    write_atomic(out / "results.json", json.dumps(results, indent=2, default=float))
    from pipeline.bench.report import write_bench_report

    write_bench_report(results, out)
    log(f"[bench] {out / 'README.md'}")
    return results


def vendor_tools(model: str, deployed: dict, bc: BenchConfig, log) -> dict:
    """Each deployed artifact as the camera program runs it, timed by us and by its runtime's own tool on the same
    file, taking turns (engines.vendor_crosscheck)."""
    rows = {}
    for target_name, artifacts in deployed.items():
        target = get_target(target_name)
        for precision, key in (("fp32", "float"), ("int8", "int8")):
            name = f"{target.device_runtime} {precision}"
            if target.device_runtime not in VENDOR_TOOLS:
                rows[name] = {"tool": None, "why": NO_TOOL.get(target.device_runtime, "no tool of its own known")}
                continue
            folder = Path(bc.out) / "camera-input" / f"{model}-{target_name}-{precision}"
            artifact, runner, sample = as_the_camera_runs(target, artifacts[key], artifacts["deploy"].preprocess, bc.threads, folder)
            rows[name] = vendor_crosscheck(target.device_runtime, artifact, runner, sample, bc.threads,
                                           bc.vendor_rounds, bc.vendor_seconds) | {"input": "pixels" if runner.takes_pixels else "tensor"}
            if rows[name].get("ratio"):
                log(f"[bench] {name}: ours / {rows[name]['tool']} = {rows[name]['ratio']:.3f}")
    return rows


def op_profiles(deployed: dict, sample: np.ndarray, log) -> dict:
    """fp32 and int8 time by op kind, for each deployed target whose runtime has counters (bench.profile)."""
    profiles = {}
    for target_name, artifacts in deployed.items():
        runtime = get_target(target_name).device_runtime
        if runtime in PROFILERS:
            profiles[runtime] = op_profile(runtime, artifacts["float"], artifacts["int8"], sample)
            log(f"[bench] {runtime} op profile: int8 {profiles[runtime]['int8_over_fp32']:.2f}x fp32 on one thread, "
                f"{profiles[runtime]['bound_if_int8_rest_cost_fp32s']:.2f}x if its non-convolution ops cost fp32's")
    return profiles


def as_the_camera_runs(target, artifact: Path, preprocess, threads: int, folder: Path):
    """(artifact, runner, sample) as the bundle's camera program has them: the target's pixel artifact fed the camera's
    uint8 pixels where it makes one (LiteRT: the same file, its input quantized by a table in the runner), else
    the artifact fed normalised tensors."""
    size = preprocess.image_size
    folder.mkdir(parents=True, exist_ok=True)
    pixel_artifact = target.with_pixel_input(artifact, preprocess, folder / "model")
    if pixel_artifact is None:
        return artifact, target.runner(artifact, threads, "f32"), np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    runner = target.runner(pixel_artifact, threads, "f32")
    runner.accept_pixels(preprocess)
    return pixel_artifact, runner, np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)


def _accuracy(v: dict | None) -> dict | None:
    if not v:
        return None
    a = v["accuracy"]
    return {"float_top1": a["float"]["top1"], "float_top5": a["float"]["top5"], "int8_top1": a["int8"]["top1"],
            "int8_top5": a["int8"]["top5"], "agreement": a["top1_agreement"], "images": v["images"]}


def valid_models(names: list[str]) -> tuple[str, ...]:
    return tuple(get_spec(n).name for n in names) if names else tuple(FAMILY)

"""`make bench`: every installed runtime side by side, measured one way, with tables and plots.

Latency is batch 1 after warm-up, with the engines interleaved run by run inside one process so
machine drift hits them alike. OpenVINO's own benchmark_app measures the same IR files as a
cross-check. Accuracy comes from the deploy pipeline's own validation; the camera loop is run on a
generated video; the pipeline's stage times come from the run folders' records.
"""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from edge.files import artifact_size_mb
from edge.latency import percentiles
from pipeline import PipelineError
from pipeline.config import make_config
from pipeline.deploy import Deploy
from pipeline.family import FAMILY, get_spec
from pipeline.models import load
from pipeline.runfolder import write_atomic
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
    benchmark_app_seconds: int = 10
    scaling_budget_s: float = 600.0  # stop climbing the B family once this much time is spent
    camera_frames: int = 300

    def effective(self) -> "BenchConfig":
        if not self.quick:
            return self
        return replace(self, runs=min(self.runs, 100), warmup=min(self.warmup, 10),
                       benchmark_app_seconds=min(self.benchmark_app_seconds, 3), scaling_budget_s=min(self.scaling_budget_s, 90.0))


def machine_info(threads: int) -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        flags = next((l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags")), "")
    except OSError:
        flags = ""
    import nncf
    import onnxruntime
    import openvino

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": threads or os.cpu_count(),
        "isa": [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8") if f" {f}" in flags],
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "python": platform.python_version(),
        "versions": {"torch": torch.__version__, "openvino": openvino.get_version().split("-")[0],
                     "onnxruntime": onnxruntime.__version__, "nncf": nncf.__version__, "numpy": np.__version__},
    }


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
    d = Deploy(cfg, log)
    stages = {"model": d.model(), "calibration": d.calibration(), "float": d.float_artifact(), "int8": d.int8_artifact()}
    if real:
        stages["validate"] = d.validation()
    return {
        "deploy": d,
        "float": stages["float"].artifact,
        "int8": stages["int8"].artifact,
        "stage_seconds": {k: s.seconds for k, s in stages.items()},
        "validation": stages["validate"].result if real else None,
    }


def bench_targets() -> tuple[str, ...]:
    """The CPU targets whose converters and runtimes are installed here (openvino first: the camera loop uses it)."""
    return tuple(name for name in ("openvino", "onnx", "tflite") if get_target(name).is_available()[0])


def engines_for(model: str, deployed: dict, threads: int) -> dict:
    """name -> (runtime label, infer function): PyTorch and each deployed target's float and int8, as the target runs them."""
    d = deployed["openvino"]["deploy"]
    torch_model = d._torch_model(d.model())
    torch.set_num_threads(threads or os.cpu_count())

    def torch_infer(x):
        with torch.no_grad():
            return torch_model(torch.from_numpy(x))

    runners = {}
    for name, artifacts in deployed.items():
        target = get_target(name)
        runtime = target.device_runtime
        runners[f"{runtime} fp32"] = target.runner(artifacts["float"], threads, "f32")
        runners[f"{runtime} int8"] = target.runner(artifacts["int8"], threads, "f32")
    import openvino

    if "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        runners["openvino bf16"] = get_target("openvino").runner(deployed["openvino"]["float"], threads, "bf16")
    return {"pytorch fp32": ("pytorch eager", torch_infer), **{name: (r.runtime, r.infer) for name, r in runners.items()}}


def interleaved_latency(engines: dict, sample: np.ndarray, warmup: int, runs: int, block: int = 10) -> dict:
    """Engines take turns in blocks of `block` runs, in a rotating order, so drift hits them alike.

    Switching engine every single run would measure thread-pool hand-over (each runtime's
    threads spin or sleep while another's work): the first run of each block is untimed.
    """
    names = list(engines)
    for name in names:
        for _ in range(warmup):
            engines[name][1](sample)
    times = {name: [] for name in names}
    rounds = max(1, -(-runs // block))
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            infer = engines[name][1]
            infer(sample)  # settle this runtime's threads after the previous engine's turn
            for _ in range(block):
                t0 = time.perf_counter()
                infer(sample)
                times[name].append((time.perf_counter() - t0) * 1000)
    return {name: {**percentiles(t), "runtime": engines[name][0]} for name, t in times.items()}


def benchmark_app(xml: Path, size: int, precision: str, seconds: int) -> float | None:
    """OpenVINO's own tool on the same IR: median latency in ms (latency hint, sync API)."""
    exe = Path(sys.executable).parent / "benchmark_app"
    cmd = [str(exe) if exe.exists() else "benchmark_app", "-m", str(xml), "-d", "CPU", "-hint", "latency", "-api", "sync",
           "-shape", f"[1,3,{size},{size}]", "-infer_precision", precision, "-t", str(seconds)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    m = re.search(r"Median:\s+([\d.]+) ms", r.stdout)
    return float(m.group(1)) if m else None


def camera_loop_rate(deployed_ov: dict, preprocess, out: Path, threads: int, frames: int) -> dict:
    """The camera program's frames/s on a generated video vs the bare inference rate of the same artifact."""
    import cv2

    from edge.latency import measure
    from edge.loop import LoopOptions, run_loop
    from edge.sources import Grabber, open_source
    from pipeline.sample_data import CALIBRATION_PHOTOS, _skimage_photo

    photos = [cv2.resize(cv2.imread(str(_skimage_photo(p))), (640, 480)) for p in CALIBRATION_PHOTOS]
    video = out / "camera.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    for i in range(frames):
        writer.write(photos[(i // 10) % len(photos)])
    writer.release()
    runner = get_target("openvino").runner(deployed_ov["int8"], threads, "f32")
    size = preprocess.image_size
    bare = measure(runner.infer, np.zeros((1, 3, size, size), np.float32), warmup=20, runs=200)
    names = [str(i) for i in range(1000)]
    result = {"bare_inference_fps": bare["throughput_fps"], "inference_p50_ms": bare["p50"]}
    for mode, latest, pace in (("every frame", False, 0), ("live at 30 fps", True, 30)):
        grabber = Grabber(open_source(str(video)), latest_only=latest, pace_fps=pace, prepare=preprocess)
        summary = run_loop(runner, preprocess, names, grabber, LoopOptions(stats_every=0), lambda r: None, threading.Event())
        result[mode] = {k: summary[k] for k in ("classified", "fps", "dropped_stale", "age_ms", "preprocess_ms", "inference_ms", "latency_ms")}
    result["loop_loss"] = 1 - result["every frame"]["fps"] / bare["throughput_fps"]
    return result


def scaling(bc: BenchConfig, log) -> list[dict]:
    """Latency and size from b0 up the family until the time budget is spent (random weights: cost only)."""
    rows, t_start = [], time.monotonic()
    for model in SCALING:
        t0 = time.monotonic()
        cfg = make_config("openvino", {"model": model, "weights": "random", "calib_size": "8", "out": str(Path(bc.out) / "runs" / f"{model}-scaling")})
        d = Deploy(cfg, log)
        fp32 = d.float_artifact()
        int8 = d.int8_artifact()
        size = d.preprocess.image_size
        sample = np.zeros((1, 3, size, size), np.float32)
        runs = max(10, min(bc.runs, int(2000 / (1 + size / 100))))
        engines = {
            "fp32": ("", d.target.runner(fp32.artifact, bc.threads, "f32").infer),
            "int8": ("", d.target.runner(int8.artifact, bc.threads, "f32").infer),
        }
        lat = interleaved_latency(engines, sample, 5, runs // 4, block=5)
        rows.append({
            "model": model, "resolution": size, "gflops": get_spec(model).gflops,
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
    for model in bc.models:
        get_spec(model)
        weights, real = _weights_for(model, log)
        deployed = {t: deploy_model(model, t, bc, weights, real, log) for t in bench_targets()}
        engines = engines_for(model, deployed, bc.threads)
        size = deployed["openvino"]["deploy"].preprocess.image_size
        log(f"[bench] {model}: interleaving {len(engines)} engines, {bc.runs} runs each")
        latency = interleaved_latency(engines, np.zeros((1, 3, size, size), np.float32), bc.warmup, bc.runs)
        base = latency["pytorch fp32"]["p50"]
        for name, row in latency.items():
            row["speedup_vs_pytorch"] = base / row["p50"]
            own = latency.get(name.rsplit(" ", 1)[0] + " fp32")
            row["speedup_vs_own_fp32"] = own["p50"] / row["p50"] if own else None
        vendor = {}
        for prec_name, key in (("fp32", "float"), ("int8", "int8")):
            theirs = benchmark_app(deployed["openvino"][key], size, "f32", bc.benchmark_app_seconds)
            ours = latency[f"openvino {prec_name}"]["p50"]
            vendor[f"openvino {prec_name}"] = {"ours_p50_ms": ours, "benchmark_app_median_ms": theirs,
                                               "ratio": ours / theirs if theirs else None}
        results["models"][model] = {
            "resolution": size,
            "weights": "pretrained" if real else "random (no offline weights): latency only",
            "latency_ms": latency,
            "benchmark_app": vendor,
            "accuracy": {t: _accuracy(d["validation"]) for t, d in deployed.items()} if real else None,
            "data": str(deployed["openvino"]["deploy"].data_dir) if real else None,
            "stage_seconds": {t: d["stage_seconds"] for t, d in deployed.items()},
        }
        log(f"[bench] {model}: camera loop on a generated video (openvino int8)")
        results["models"][model]["camera_loop"] = camera_loop_rate(
            deployed["openvino"], deployed["openvino"]["deploy"].preprocess, out, bc.threads, bc.camera_frames)
    results["scaling"] = scaling(bc, log)
    write_atomic(out / "results.json", json.dumps(results, indent=2, default=float))
    from pipeline.bench_report import write_bench_report

    write_bench_report(results, out)
    log(f"[bench] {out / 'README.md'}")
    return results


def _accuracy(v: dict | None) -> dict | None:
    if not v:
        return None
    a = v["accuracy"]
    return {"float_top1": a["float"]["top1"], "float_top5": a["float"]["top5"], "int8_top1": a["int8"]["top1"],
            "int8_top5": a["int8"]["top5"], "agreement": a["top1_agreement"], "images": v["images"]}


def valid_models(names: list[str]) -> tuple[str, ...]:
    return tuple(get_spec(n).name for n in names) if names else tuple(FAMILY)

"""The runtimes side by side, measured one way: batch-1 latency interleaved engine by engine, and
each runtime's own benchmark tool on the same files as a cross-check of the timing."""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edge.latency import measure, percentiles
from targets import get_target


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


def engines_for(model: str, deployed: dict, threads: int) -> dict:
    """name -> (runtime label, infer function): PyTorch and each deployed target's float and int8, as the target runs them."""
    d = deployed["openvino"]["deploy"]
    torch_model = d.torch_model(deployed["openvino"]["model"])
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


def benchmark_app(xml: Path, sample: np.ndarray, threads: int, seconds: float, runs: int) -> float | None:
    """OpenVINO's own tool on the same IR: median latency in ms, sync API, compiled with exactly our runner's
    properties (edge.runners.openvino_config, through -load_config: latency hint, f32, our thread count)."""
    from edge.runners import openvino_config

    exe = Path(sys.executable).parent / "benchmark_app"
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps({"CPU": {k: str(v) for k, v in openvino_config(threads, "f32").items()}}))
        cmd = [str(exe) if exe.exists() else "benchmark_app", "-m", str(xml), "-d", "CPU", "-hint", "latency", "-api", "sync",
               "-shape", "[" + ",".join(map(str, sample.shape)) + "]", "-t", str(max(1, round(seconds))),
               "-load_config", str(config)]
        r = subprocess.run(cmd, capture_output=True, text=True)
    m = re.search(r"Median:\s+([\d.]+) ms", r.stdout)
    return float(m.group(1)) if m else None


def litert_benchmark(model: Path, sample: np.ndarray, threads: int, seconds: float, runs: int) -> float | None:
    """LiteRT's own benchmark (litert-benchmark, the Python port of benchmark_litert_model; CompiledModel API on
    the CPU accelerator): median latency in ms at our runner's thread count."""
    exe = Path(sys.executable).parent / "litert-benchmark"
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        cmd = [str(exe) if exe.exists() else "litert-benchmark", "--model", str(model), "--num_threads",
               str(threads or os.cpu_count() or 1), "--num_runs", str(runs), "--warmup_runs", "5", "--result_json", str(result)]
        subprocess.run(cmd, capture_output=True, text=True)
        if not result.exists():
            return None
        return float(json.loads(result.read_text())["latency"]["median_ms"])


# runtime -> (the tool, how it is called); runtimes missing here say why in NO_TOOL.
VENDOR_TOOLS = {
    "openvino": ("benchmark_app", benchmark_app),
    "litert": ("litert-benchmark", litert_benchmark),
}
NO_TOOL = {
    "onnxruntime": "the onnxruntime wheel ships no onnxruntime_perf_test",
    "tensorrt": "trtexec needs a GPU with TensorRT",
}


def bare_call(runner, prepared: np.ndarray):
    """The runtime's own inference call alone on `runner.prepare`'s result, without our runner's copies in and out
    (to tell our wrapper's share of a gap from the measurement's)."""
    from edge.runners import LiteRTRunner, OpenVINORunner

    if isinstance(runner, OpenVINORunner):
        import openvino

        request = runner.compiled.create_infer_request()
        request.set_tensor(runner.compiled.input(0), openvino.Tensor(np.ascontiguousarray(prepared)))  # pixels or a tensor, as fed
        return lambda _x: request.infer(share_outputs=True)
    if isinstance(runner, LiteRTRunner):
        runner.interpreter.set_tensor(runner.input["index"], prepared)
        return lambda _x: runner.interpreter.invoke()
    return None


def vendor_crosscheck(runtime: str, artifact: Path, runner, sample: np.ndarray, threads: int, rounds: int, seconds: float) -> dict:
    """Our timing of `runner` against its runtime's own tool on the same file and thread count
    (`threads`, as `runner` was made with: 0 = the runtime's default).

    Each round brackets the tool's run with ours (about `seconds` / 2 just before and just after it, averaged),
    `rounds` times, and the ratio is the median of the rounds' ratios: this 2-core VM drifts by 20 % within
    seconds, so two measurements a minute apart cannot be compared to 5 %. Ours runs alone here, not interleaved.
    """
    if runtime not in VENDOR_TOOLS:
        return {"tool": None, "why": NO_TOOL.get(runtime, "no tool of its own known")}
    tool, call = VENDOR_TOOLS[runtime]
    prepared = runner.prepare(sample)
    bare = bare_call(runner, prepared)
    camera_call = lambda _x: runner.run(prepared)  # noqa: E731  the camera program's inference call (edge.loop)
    ours, theirs = [], []
    for _ in range(rounds):
        before = p50_over(camera_call, sample, seconds / 2)
        median = call(artifact, sample, threads, seconds, max(20, int(seconds * 1000 / before)))
        if median is None:
            return {"tool": tool, "why": f"{tool} gave no median (is it installed?)"}
        p50 = (before + p50_over(camera_call, sample, seconds / 2)) / 2
        ours.append(p50)
        theirs.append(median)
    ratios = [o / t for o, t in zip(ours, theirs)]
    return {
        "tool": tool, "rounds": rounds, "threads": runner.threads,
        "ours_p50_ms": float(np.median(ours)), "theirs_median_ms": float(np.median(theirs)),
        "ratio": float(np.median(ratios)), "ratio_range": [float(min(ratios)), float(max(ratios))],
        "wrapper_ms": wrapper_ms(camera_call, bare, sample, seconds) if bare is not None else None,
        # the runner's own input mapping, which the camera program does on its capture thread (Runner.prepare)
        "capture_thread_ms": p50_over(runner.prepare, sample, seconds / 4) if prepared is not sample else None,
    }


def wrapper_ms(ours, bare, sample: np.ndarray, seconds: float) -> float:
    """Our call's p50 minus the runtime's bare call's, the two interleaved in blocks over about `seconds`: taken a
    second apart, drift made this difference swing by ±1 ms (negative as often as not)."""
    runs = max(100, int(seconds * 1000 / p50_over(bare, sample, 0.2)))
    timed = interleaved_latency({"ours": ("", ours), "bare": ("", bare)}, sample, warmup=5, runs=runs)
    return timed["ours"]["p50"] - timed["bare"]["p50"]


def paired_speedup(fp32, int8, sample: np.ndarray, rounds: int, seconds: float) -> dict:
    """int8's speed-up over its own fp32, as the median of `rounds` ratios of p50s taken in turns of about
    `seconds` each: one run's interleaved blocks can land on a slow stretch of this VM for one engine only."""
    ratios = [p50_over(fp32, sample, seconds) / p50_over(int8, sample, seconds) for _ in range(rounds)]
    return {"ratio": float(np.median(ratios)), "range": [float(min(ratios)), float(max(ratios))], "rounds": rounds}


def p50_over(infer, sample: np.ndarray, seconds: float) -> float:
    """p50 in ms of `infer(sample)` over about `seconds` (after a few warm-up calls)."""
    first = measure(infer, sample, warmup=5, runs=5)["p50"]
    return measure(infer, sample, warmup=0, runs=max(20, int(seconds * 1000 / first)))["p50"]

"""The runtimes side by side, measured one way: batch-1 latency interleaved engine by engine, and
OpenVINO's own benchmark_app on the same files as a cross-check."""
from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from edge.latency import percentiles
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

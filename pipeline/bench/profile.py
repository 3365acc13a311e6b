"""Where each runtime spends an artifact's time, op by op, from the runtime's own counters: ONNX Runtime's profiler
and OpenVINO's performance counters. It says why an int8 model is or is not faster than its fp32: an int8 file whose
convolutions alone take most of fp32's whole run cannot be much faster, whatever the rest costs.

Times are per inference, summed over the nodes of one kind (a kind: the runtime's op type, and for OpenVINO the
precision it executed in). One thread, so the counters add up to the run (with several threads they overlap).
"""
from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

# Op kinds that are convolutions (the multiply-adds int8 makes cheaper), by runtime.
CONVOLUTIONS = {"Conv", "QLinearConv", "FusedConv", "NhwcQLinearConv", "Convolution", "GroupConvolution"}


def onnxruntime_op_ms(artifact: Path, sample: np.ndarray, runs: int, threads: int = 1) -> dict[str, float]:
    """ms per inference by ONNX Runtime op type, as its CPU provider runs the optimised graph (fused nodes by their
    fused type: QuickGelu, NhwcQLinearConv...). One thread by default, so the counters add up to the run."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(artifact), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: sample}
        session.run(None, feed)
        totals: Counter = Counter()
        events = _profile_runs(session, feed, runs)
        for event in events:
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                totals[event["args"]["op_name"]] += event["dur"] / 1000
    return {op: ms / runs for op, ms in totals.most_common()}


def _profile_runs(session, feed: dict, runs: int) -> list[dict]:
    for _ in range(runs):
        session.run(None, feed)
    path = session.end_profiling()
    events = json.loads(Path(path).read_text())
    # The first run (before the loop) is in the file too: drop its node events, they include one-off preparation.
    first_end = next((e["ts"] + e["dur"] for e in events if e.get("name") == "model_run"), None)
    return [e for e in events if first_end is None or e.get("ts", 0) > first_end]


def openvino_op_ms(artifact: Path, sample: np.ndarray, runs: int) -> dict[str, float]:
    """ms per inference by OpenVINO CPU node type and the precision it executed in ("Convolution I8"), f32 kept f32
    as our runner compiles it."""
    import openvino

    from edge.runners import openvino_config

    core = openvino.Core()
    compiled = core.compile_model(core.read_model(str(artifact)), "CPU", {**openvino_config(1, "f32"), "PERF_COUNT": True})
    request = compiled.create_infer_request()
    request.infer({0: sample})
    totals: Counter = Counter()
    for _ in range(runs):
        request.infer({0: sample})
        for node in request.profiling_info:
            if node.status == node.Status.EXECUTED:
                totals[f"{node.node_type} {node.exec_type.rsplit('_', 1)[-1]}"] += node.real_time.total_seconds() * 1000
    return {op: ms / runs for op, ms in totals.most_common()}


PROFILERS = {"onnxruntime": onnxruntime_op_ms, "openvino": openvino_op_ms}


def op_profile(runtime: str, fp32: Path, int8: Path, sample: np.ndarray, runs: int = 50) -> dict | None:
    """fp32's and int8's time by op kind on one thread, and the bound it sets: fp32's whole run over int8's
    convolutions alone, the most int8 could gain if everything but its convolutions were free."""
    profiler = PROFILERS.get(runtime)
    if profiler is None:
        return None
    ops = {"fp32": profiler(fp32, sample, runs), "int8": profiler(int8, sample, runs)}
    total = {k: sum(v.values()) for k, v in ops.items()}
    conv = {k: sum(ms for op, ms in v.items() if op.split(" ")[0] in CONVOLUTIONS) for k, v in ops.items()}
    return {"threads": 1, "runs": runs, "ops_ms": ops, "total_ms": total, "convolution_ms": conv,
            "int8_over_fp32": total["fp32"] / total["int8"],
            "bound_if_int8_rest_were_free": total["fp32"] / conv["int8"] if conv["int8"] else None,
            "bound_if_int8_rest_cost_fp32s": total["fp32"] / (conv["int8"] + total["fp32"] - conv["fp32"]) if conv["int8"] else None}

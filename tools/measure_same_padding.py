"""What TF "same" padding costs on each target: Lite0 with symmetric padding (timm's efficientnet_lite0)
against the padding its TF-trained weights expect (tf_efficientnet_lite0), float artifacts, batch 1.

Run: .venv/bin/python tools/measure_same_padding.py   (about 2 minutes on 2 cores)

Latencies are interleaved per round so both variants see the same machine state. Measured on a
2-core AMD EPYC (Zen 4, avx512-vnni), 2026-11-30, p50 ms over 300 runs:

    target     symmetric  tf-same   extra graph ops for tf-same
    openvino     5.16      5.16     none left: the 5 Pad ops fuse into the convolutions
    onnx         8.87      8.46     5 constant Pad nodes (+ the exporter's constant pad-spec folding);
                                    before fix_same_padding: ~400 shape ops computing the pads at run time
    tflite       5.60      5.65     none: litert-torch folds each pad into CONV_2D/DEPTHWISE SAME padding
    jetson       the Q/DQ ONNX carries the same 5 constant Pads, which TensorRT fuses into the convolutions

so the reference-exact model costs about 1-2 % (within run-to-run noise here) on every target.
"""
from __future__ import annotations

import sys
import time
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import timm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import targets  # noqa: E402
from targets.fold import fold_batchnorm  # noqa: E402
from pipeline.model.load import fix_same_padding  # noqa: E402


def graph_ops(target: str, path: Path) -> Counter:
    if target == "onnx":
        import onnx

        return Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    if target == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        return Counter(o["op_name"] for o in Interpreter(model_path=str(path))._get_ops_details())
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return Counter(op.get_rt_info()["layerType"].astype(str) for op in compiled.get_runtime_model().get_ops())


def main() -> None:
    example = torch.zeros(1, 3, 224, 224)
    sample = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("openvino", "onnx", "tflite"):
            target, runners, ops = targets.get_target(name), {}, {}
            for variant in ("efficientnet_lite0", "tf_efficientnet_lite0"):
                model = fix_same_padding(timm.create_model(variant, num_classes=1000).eval(), 224)  # as deploy does
                model = fold_batchnorm(model, example)
                path = target.convert_float(model, example, Path(tmp) / f"{name}-{variant}")
                runners[variant], ops[variant] = target.runner(path), graph_ops(name, path)
            times = {v: [] for v in runners}
            for _ in range(30):  # interleaved rounds of 10
                for v, r in runners.items():
                    r.infer(sample)
                    for _ in range(10):
                        t0 = time.perf_counter()
                        r.infer(sample)
                        times[v].append((time.perf_counter() - t0) * 1000)
            extra = ops["tf_efficientnet_lite0"] - ops["efficientnet_lite0"]
            print(f"{name:9} symmetric p50 {np.median(times['efficientnet_lite0']):.2f} ms, "
                  f"tf-same p50 {np.median(times['tf_efficientnet_lite0']):.2f} ms, extra ops: {dict(extra) or 'none'}")


if __name__ == "__main__":
    main()

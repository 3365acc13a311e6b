"""ONNX Runtime int8 B0: swish quantized (ONNX Runtime's placement: QLinearSigmoid and QLinearMul) against swish left in
float between the int8 convolutions (DequantizeLinear, Sigmoid, Mul, QuantizeLinear), op kind by op kind.

Random B0 weights with BatchNorm statistics estimated on random images (cost only; nothing is classified), exported
as the ONNX target exports it, quantized by ONNX Runtime's quantize_static as the target does on a VNNI board, once
with its default op types and once with Sigmoid and Mul left out. ONNX Runtime's profiler, 1 and 2 threads.

Run: .venv/bin/python tools/measure_ort_swish_placement.py (about 15 s on 2 cores).

Measured 2026-12-05 on a 2-core AMD EPYC Zen 4 (AVX-512 VNNI), onnxruntime 1.32.0, ms per inference:

    threads  file                  total   top op kinds
    1        fp32                  12.06   Conv 8.66, QuickGelu 1.93, Mul 0.38
    1        int8, swish int8       9.33   QLinearConv 4.73, QLinearMul 2.31, QLinearSigmoid 1.83
    1        int8, swish in float  12.63   QLinearConv 4.75, DequantizeLinear 2.16, Mul 2.00, Sigmoid 1.91, QuantizeLinear 1.38
    2        fp32                   7.50   Conv 5.04, QuickGelu 1.19, Mul 0.33
    2        int8, swish int8       6.98   QLinearConv 3.08, QLinearMul 2.02, QLinearSigmoid 1.42
    2        int8, swish in float  10.27   QLinearConv 3.10, DequantizeLinear 3.04, Mul 1.38, Sigmoid 1.27, QuantizeLinear 1.04

What it shows: leaving swish in float costs more than ONNX Runtime's int8 swish (the Q/DQ passes around it, and
Sigmoid x Mul no longer fuse into fp32's QuickGelu), and ONNX Runtime's int8 swish itself (a 256-entry table per
element, then a second pass to multiply) costs more than fp32's fused QuickGelu and scales poorly to 2 threads.
ONNX Runtime has no int8 op that computes swish in one pass.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from calibration.adapters import OnnxRuntimeReader  # noqa: E402
from pipeline.bench.profile import onnxruntime_op_ms  # noqa: E402
from pipeline.model.family import get_spec  # noqa: E402
from pipeline.model.load import build, reestimate_batchnorm  # noqa: E402
from targets.onnx_graph import export_folded  # noqa: E402

SWISH_IN_FLOAT = ["Conv", "Gemm", "Add", "GlobalAveragePool", "MatMul"]  # quantize_static's op types without Sigmoid, Mul


def main() -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    images = np.random.default_rng(0).standard_normal((16, 3, 224, 224)).astype(np.float32)
    model = reestimate_batchnorm(build(get_spec("b0")), [images[i:i + 8] for i in (0, 8)])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fp32 = export_folded(model, torch.from_numpy(images[:1]), tmp / "fp32")
        quant_pre_process(str(fp32), str(tmp / "prepared.onnx"))
        files = {"fp32": fp32}
        for name, ops in (("int8, swish int8", None), ("int8, swish in float", SWISH_IN_FLOAT)):
            files[name] = tmp / f"{len(files)}.onnx"
            quantize_static(str(tmp / "prepared.onnx"), str(files[name]), OnnxRuntimeReader(images, "input"),
                            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, **({"op_types_to_quantize": ops} if ops else {}))
        sample = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
        for threads in (1, 2):
            for name, path in files.items():
                ms = onnxruntime_op_ms(path, sample, runs=20, threads=threads)  # the bench's profiler, sorted by time
                top = ", ".join(f"{op} {t:.2f}" for op, t in list(ms.items())[:5])
                print(f"{threads:<8} {name:21} {sum(ms.values()):6.2f}   {top}")


if __name__ == "__main__":
    main()

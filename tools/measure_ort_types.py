"""ONNX Runtime int8 on an AVX2-only CPU: which activation/weight types keep Lite0 faithful to float.

Same photos, crops and agreement measure as tools/measure_fidelity.py (label-free: int8 top-1 ==
float top-1). The float ONNX carries NNCF's corrected biases, as targets/onnx.py quantizes it.

Run: .venv/bin/python tools/measure_ort_types.py   (a few minutes on 2 cores)

Measured 2026-12-01 on a 2-core AMD EPYC Zen 3 (AVX2, no VNNI), 296 calibration crops, 288 measured
crops of 36 other photos; ms/img is batch-1 inference in this loop (another job ran beside some rows):

    types            agreement (95 % Wilson)   confident crops   ms/img
    U8S8 reduce_range  0.694 (0.639-0.745)      0.977              9.7   <- targets/onnx.py for board.isa=avx2
    U8U8               0.774 (0.723-0.819)      1.000             59.0   (no fast u8u8 kernel path)
    S8S8               0.601 (0.543-0.656)      0.977             14.8
    U8S8 (8-bit)       0.576 (0.519-0.632)      0.955             24.7   saturates: the VNNI recipe on AVX2

The same 8-bit U8S8 artifact agreed on 0.885 on a Zen 4 (VNNI) host: the kernels, not the file, lose it.
U8U8 is the only type pair that does not saturate on AVX2, and runs 6x slower; reduce_range keeps
the speed and most of the fidelity. NNCF's overflow fix on OpenVINO reached 0.802 on the same CPU.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]
import targets  # noqa: E402
from edge.runners import load_runner  # noqa: E402
from measure_fidelity import agreement, arrays, photos  # noqa: E402
from pipeline.config import make_config  # noqa: E402
from pipeline.family import get_spec  # noqa: E402
from pipeline.models import fix_same_padding, load  # noqa: E402
from targets.onnx import _Reader, bias_corrected, calibration_example  # noqa: E402


def corrected_float(model, calib, tmp: Path) -> Path:
    """The float ONNX with NNCF's 8-bit bias corrections, shape-inferred: what targets/onnx.py quantizes."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    target = targets.get_target("onnx")
    fp32 = target.convert_float(model, calibration_example(calib), tmp / "fp32")
    corrected = bias_corrected(model, fp32, calib, make_config("onnx", {}).quant.without_headroom(), ())
    fp32 = target.convert_float(corrected, calibration_example(calib), tmp / "corrected")
    prepared = tmp / "prepared.onnx"
    quant_pre_process(str(fp32), str(prepared))
    return prepared


def main() -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    spec = get_spec("lite0")
    pre = spec.preprocess
    model = fix_same_padding(load(spec).model.eval(), pre.image_size)
    ps = photos()
    calib, x = arrays(ps[0::2], 8, pre, 0)[:300], arrays(ps[1::2], 8, pre, 1)
    with torch.no_grad():
        logits = torch.cat([model(torch.from_numpy(x[i : i + 32])) for i in range(0, len(x), 32)])
    reference, confident = logits.argmax(1).numpy(), (logits.softmax(1).max(1).values >= 0.5).numpy()
    u8, s8 = QuantType.QUInt8, QuantType.QInt8
    with tempfile.TemporaryDirectory() as tmp:
        prepared = corrected_float(model, calib, Path(tmp))
        for name, act, weight, reduce_range in [("U8S8 reduce_range", u8, s8, True), ("U8U8", u8, u8, False),
                                                ("S8S8", s8, s8, False), ("U8S8 (8-bit)", u8, s8, False)]:
            out = Path(tmp) / f"{name.split()[0]}-{reduce_range}.onnx"
            quantize_static(str(prepared), str(out), _Reader(calib, "input"), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=act, weight_type=weight, calibrate_method=CalibrationMethod.MinMax,
                            reduce_range=reduce_range)
            t0 = time.perf_counter()
            result = agreement(load_runner("onnxruntime", out), x, reference, confident)
            print(f"{name:18} {result}  [{(time.perf_counter() - t0) / len(x) * 1000:.1f} ms/img]", flush=True)


if __name__ == "__main__":
    main()

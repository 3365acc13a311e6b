"""Measure ONNX Runtime's static quantization against NNCF's ONNX backend on real Lite0 weights.

Both quantize the same float ONNX with the same 16 calibration photos; both int8 files run in
ONNX Runtime; agreement with the float model is measured on 200 random crops and flips of the
bundled photos (real image statistics, no labels needed), latency at batch 1.

    python tools/compare_onnx_quantizers.py [MODEL]
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from calibration import sets as calibration
from edge.isa import detect
from edge.latency import measure
from pipeline.model.family import get_spec
from pipeline.model.load import load
from pipeline.data.sample import CALIBRATION_PHOTOS, _skimage_photo, calibration_folder
from targets import onnx as onnx_target
from pipeline.config import QuantConfig


def crops(pre, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = [cv2.imread(str(_skimage_photo(p)), cv2.IMREAD_COLOR) for p in CALIBRATION_PHOTOS]
    out = []
    for _ in range(n):
        img = images[rng.integers(len(images))]
        h, w = img.shape[:2]
        s = int(min(h, w) * rng.uniform(0.4, 1.0))
        y, x = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
        crop = img[y : y + s, x : x + s]
        out.append(pre(crop[:, ::-1] if rng.random() < 0.5 else crop))
    return np.stack(out)


def main(model_name: str = "lite0") -> None:
    import nncf
    import onnx

    spec = get_spec(model_name)
    model = load(spec).model
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        calib = calibration.build(calibration_folder(tmp / "calib"), 16, spec.preprocess).batch
        test = crops(spec.preprocess, 200)
        example = torch.zeros(1, 3, spec.preprocess.image_size, spec.preprocess.image_size)
        fp32 = onnx_target.TARGET.convert_float(model, example, tmp / "float")
        ort_int8 = onnx_target.TARGET.quantize(model, fp32, calib, QuantConfig(), tmp / "ort", isa=detect())
        nncf_model = nncf.quantize(
            onnx.load(str(fp32)), nncf.Dataset([{"input": calib[i : i + 1]} for i in range(len(calib))]),
            preset=nncf.QuantizationPreset.MIXED, subset_size=len(calib),
        )
        onnx.save(nncf_model, str(tmp / "nncf.onnx"))
        ref = onnx_target.TARGET.runner(fp32).infer(test).argmax(1)
        for label, path in [("float", fp32), ("onnxruntime static", ort_int8), ("nncf onnx", tmp / "nncf.onnx")]:
            r = onnx_target.TARGET.runner(path)
            agree = (r.infer(test).argmax(1) == ref).mean()
            lat = measure(r.infer, test[:1], warmup=20, runs=200)
            print(f"{label:20} agreement {agree:.3f}  p50 {lat['p50']:.2f} ms  p90 {lat['p90']:.2f} ms")


if __name__ == "__main__":
    main(*sys.argv[1:])

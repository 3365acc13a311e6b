"""int8 fidelity to float (top-1 agreement) of real Lite0 on real photos, per target and quantizer recipe.

Photos: scikit-image's 16 and the photographs in Debian's gnome-backgrounds and
plasma-workspace-wallpapers (apt install them), each cut into random crops. Photos, not crops,
are split in two: crops of one half calibrate, crops of the other half measure, so no measured
image shares a photo with calibration. No labels needed: agreement is int8 top-1 == float top-1.

Run: .venv/bin/python tools/measure_fidelity.py [--targets openvino,onnx,jetson,tflite] [--isa avx2,avx512-vnni]
(a few minutes on 2 cores).

Measured 2026-11-30 on a 2-core AMD EPYC Zen 4 (host int8 ISA avx512-vnni), 73 distinct pictures
(16 scikit-image photos, 57 GNOME/Plasma backgrounds, many of them abstract art, far from ImageNet),
296 calibration crops, 288 measured crops of the other 36 pictures; agreement with float top-1:

    target     made for avx2 (headroom)        made for avx512-vnni (full 8-bit)
    openvino   0.670 (0.614-0.722)  ENABLE      0.677 (0.621-0.728)  DISABLE
    onnx       0.691 (0.635-0.742)  reduce      0.743 (0.690-0.790)
    jetson*    0.771 (0.719-0.816)  ENABLE      0.844 (0.797-0.881)  DISABLE
    tflite     0.736 (0.682-0.784)              0.736 (the same file: no ISA setting)
    (* the Q/DQ model run in ONNX Runtime on this CPU, not TensorRT)

On a VNNI host the headroom recipes cost agreement (7-bit weights), as expected: they are for boards
that need them. These crops are much harder than the labelled photos of the int8 fidelity issue
(0.82-0.96 there): many are textures and abstract shapes whose float top-1 is a near tie. The 0.97
target is not reached on this set by any recipe here; the levers (range estimators, bias correction,
higher-precision sensitive layers steered by agreement, label-free distillation) are still to measure.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import targets  # noqa: E402
from edge.isa import detect  # noqa: E402
from edge.metrics import wilson  # noqa: E402
from pipeline.config import make_config  # noqa: E402
from pipeline.family import get_spec  # noqa: E402
from pipeline.models import fix_same_padding, load  # noqa: E402
from pipeline.sample_data import CALIBRATION_PHOTOS, _skimage_photo  # noqa: E402

PHOTO_DIRS = ("/usr/share/backgrounds", "/usr/share/wallpapers")


def photos(min_side: int = 480) -> list[Path]:
    found = [_skimage_photo(p) for p in CALIBRATION_PHOTOS]
    for d in PHOTO_DIRS:
        for p in sorted(Path(d).rglob("*")):
            if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp") and "screenshot" not in p.name.lower():
                found.append(p)
    keep, seen = [], set()
    for p in found:
        img = cv2.imread(str(p))
        if img is None or min(img.shape[:2]) < min_side and "skimage" not in str(p):
            continue
        digest = hashlib.sha256(cv2.resize(img, (32, 32)).tobytes()).hexdigest()
        if digest not in seen:  # the same picture at several resolutions is one photo
            seen.add(digest)
            keep.append(p)
    return keep


def crops(path: Path, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    img = cv2.imread(str(path))
    h, w = img.shape[:2]
    out = [img]
    for _ in range(n - 1):
        side = int(min(h, w) * rng.uniform(0.3, 1.0))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        out.append(img[y : y + side, x : x + side])
    return out


def arrays(paths: list[Path], per_photo: int, pre, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([pre(c) for p in paths for c in crops(p, per_photo, rng)]).astype(np.float32)


def agreement(runner, x: np.ndarray, reference: np.ndarray) -> tuple[float, tuple[float, float]]:
    top = np.array([int(np.asarray(runner.infer(x[i : i + 1])).argmax()) for i in range(len(x))])
    k = int((top == reference).sum())
    return k / len(x), wilson(k, len(x))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", default="openvino,onnx,jetson,tflite")
    ap.add_argument("--isa", default=f"{detect()}")
    ap.add_argument("--per-photo", type=int, default=8)
    ap.add_argument("--calib", type=int, default=300)
    args = ap.parse_args()
    spec = get_spec("lite0")
    pre = spec.preprocess
    model = fix_same_padding(load(spec).model.eval(), pre.image_size)
    ps = photos()
    calib_photos, eval_photos = ps[0::2], ps[1::2]
    calib = arrays(calib_photos, args.per_photo, pre, 0)[: args.calib]
    x = arrays(eval_photos, args.per_photo, pre, 1)
    with torch.no_grad():
        reference = np.concatenate([model(torch.from_numpy(x[i : i + 32])).argmax(1).numpy() for i in range(0, len(x), 32)])
    print(f"host int8 ISA {detect()}; {len(ps)} photos: {len(calib)} calibration crops, {len(x)} measured crops "
          f"of {len(eval_photos)} other photos")
    example = torch.zeros(1, 3, pre.image_size, pre.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.targets.split(","):
            target = targets.get_target(name)
            fp32 = target.convert_float(model, example, Path(tmp) / f"{name}-fp32")
            for isa in args.isa.split(","):
                quant = make_config(name, {"board.isa": isa}).quant
                t0 = time.perf_counter()
                int8 = target.quantize(model, fp32, calib, quant, Path(tmp) / f"{name}-{isa}")
                a, (lo, hi) = agreement(target.runner(int8), x, reference)
                print(f"{name:9} made for {isa:12} {quant.recipe(name)}: agreement {a:.3f} (95 % {lo:.3f}-{hi:.3f}) "
                      f"[{time.perf_counter() - t0:.0f} s]", flush=True)


if __name__ == "__main__":
    main()

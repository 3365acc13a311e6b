"""int8 fidelity to float (top-1 agreement) of real Lite0 on real photos, per target and quantizer recipe.

Photos: scikit-image's 16 and the photographs in Debian's gnome-backgrounds and
plasma-workspace-wallpapers (apt install them), each cut into random crops. Photos, not crops,
are split in two: crops of one half calibrate, crops of the other half measure, so no measured
image shares a photo with calibration. No labels needed: agreement is int8 top-1 == float top-1.

Run: .venv/bin/python tools/measure_fidelity.py [--targets openvino,onnx,jetson,tflite] [--isa avx2,avx512-vnni]
     [--set quant.bias_correction=off] [--swap] [--emulate-avx2] [--keep-float 0,2,10]
(a few minutes on 2 cores). --emulate-avx2 runs OpenVINO as on an AVX2-only CPU (oneDNN's
ONEDNN_MAX_CPU_ISA=AVX2: its u8×s8 kernels then saturate as Zen 3's do); ONNX Runtime and LiteRT
have no such switch. --swap calibrates on the other half of the photos.

Measured 2026-12-01 on a 2-core AMD EPYC Zen 4 (host int8 ISA avx512-vnni), 73 distinct pictures
(16 scikit-image photos, 57 GNOME/Plasma backgrounds, many of them abstract art, far from ImageNet),
296 calibration crops, 288 measured crops of the other 36 pictures. Top-1 agreement with float
(95 % Wilson interval); "sure" = the 44 crops whose float top-1 probability is >= 0.5:

    target    made for      bias correction off    full (the default)           full, sure crops
    openvino  avx512-vnni   0.743                  0.875 (0.832-0.908)          1.000
    onnx      avx512-vnni   0.743                  0.885 (0.843-0.917)          1.000
    jetson*   gpu recipe    0.747                  0.868 (0.824-0.902)          1.000
    tflite    any           0.736                  0.872 (0.828-0.905)          1.000
    (* the int8 Q/DQ model, int8 throughout as TensorRT needs, run in ONNX Runtime on this CPU)

The preset follows the model (quant.preset=auto): for Lite0 (ReLU6) symmetric activations agreed
on 0.875 / 0.831 of the crops (the two halves, --swap) against asymmetric's 0.830 / 0.784.

AVX2 boards. OpenVINO under --emulate-avx2 (the AVX2 arithmetic, on this host):
    made for avx512-vnni (8-bit weights)       0.566 (0.508-0.622): saturation
    made for avx2 (NNCF overflow fix ENABLE)   0.819 (0.771-0.860)  the same as on VNNI: no saturation left
Made for avx2 and run on this VNNI host: openvino 0.819, jetson-recipe 0.771, onnx (reduce_range)
0.691 (bias corrections for NNCF's 7-bit grid, which is not reduce_range's, made it 0.604, so ONNX
takes the 8-bit corrections, which neither help nor harm there), tflite 0.872 (XNNPACK needs no
headroom on any ISA). A true Zen 3 measurement of ONNX Runtime's AVX2 kernels is still to do.

These crops are much harder than labelled photos of objects: the confident ones agree fully, and
the 0.97 target is not met on the near-ties that dominate this set.

Keeping the layers pipeline/quant/sensitivity.py ranks most sensitive out of int8 (--keep-float; ranked
label-free on 32 calibration crops; QUANT=auto's lever), OpenVINO, avx512-vnni, 2026-12-01:
    layers kept in float     0       2       5       10      20
    agreement                0.875   0.931   0.913   0.941   0.965 (0.937-0.981)
The first two are the stem and the first depthwise conv (blocks.0.0.conv_dw, conv_stem), which
carry little compute: most of the gap closes there. The ranking is one-layer-alone sensitivity, so
it is not monotone in what a set gains (5 < 2).

A real AVX2-only CPU (2-core AMD EPYC Zen 3, no VNNI), the same photos and split, 2026-12-01, each
target made for avx2 (board.isa auto-detected):
    target    recipe                         agreement             2 layers kept out of int8
    openvino  NNCF overflow fix ENABLE       0.802 (0.752-0.844)   0.837
    onnx      reduce_range (U8S8, 7-bit w)   0.694 (0.639-0.745)   0.740   (tools/measure_ort_types.py)
              ... depthwise kept 8-bit         0.729 (0.675-0.777)           (the recipe since; as NNCF's overflow fix)
    jetson*   overflow fix, run in ORT       0.760 (0.708-0.806)   0.861   (* host check only: TensorRT does not saturate)
    tflite    XNNPACK                        0.882 (0.840-0.914)   0.778   (16x8 for those two layers hurts here)
(ONNX Runtime's 0.740 with 2 layers kept out of int8 predates the fix of 2026-12-02: a kept-float layer
then read its input without the ReLU6 ONNX Runtime's quantizer had folded into the Q/DQ pair.)
OpenVINO's emulated AVX2 (0.819) was close to the real one (0.802).
One activation scale per tensor (quant.activation_scales=per-tensor, the default since 2026-12-02), the same
Zen 3 and split: openvino 0.785 (0.734-0.828) against 0.792 per-channel in the same session; jetson 0.764
(its Q/DQ file had per-channel scales on depthwise inputs before, which TensorRT cannot take). The confident crops agree on
0.977-1.000 everywhere: the losses are near-ties.

Label-free QAT (--qat-epochs; QUANT=qat with quant.qat_data=calibration): NNCF's PyTorch PTQ, then
distillation from float on the 296 calibration crops alone, measured on the other photos' crops.
OpenVINO on the Zen 3, made for avx2:
    PTQ 0.802 -> 3 epochs at lr 1e-5: 0.837 (0.790-0.875) (train-crop agreement 0.882); 6 epochs: 0.837;
    3 epochs at lr 1e-4: 0.691 (too high: it drifts from float). About 45 s an epoch on 2 cores.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
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
from pipeline.model.family import get_spec  # noqa: E402
from pipeline.model.load import fix_same_padding, load  # noqa: E402
from pipeline.data.sample import CALIBRATION_PHOTOS, _skimage_photo  # noqa: E402

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


def agreement(runner, x: np.ndarray, reference: np.ndarray, confident: np.ndarray) -> str:
    """Top-1 agreement with float on all crops, and on the crops float itself is sure of (p >= 0.5)."""
    same = np.array([int(np.asarray(runner.infer(x[i : i + 1])).argmax()) for i in range(len(x))]) == reference
    k, n = int(same.sum()), len(x)
    lo, hi = wilson(k, n)
    return f"{k / n:.3f} ({lo:.3f}-{hi:.3f}); on the {int(confident.sum())} confident crops {same[confident].mean():.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", default="openvino,onnx,jetson,tflite")
    ap.add_argument("--isa", default=f"{detect()}")
    ap.add_argument("--per-photo", type=int, default=8)
    ap.add_argument("--calib", type=int, default=300)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a deploy setting, e.g. quant.preset=performance")
    ap.add_argument("--keep-float", default="0", metavar="N[,N...]",
                    help="keep the N layers pipeline/quant/sensitivity.py ranks most sensitive out of int8 (QUANT=auto's lever)")
    ap.add_argument("--qat-epochs", type=int, default=0,
                    help="also measure label-free QAT: this many epochs of distillation from float on the calibration crops")
    ap.add_argument("--swap", action="store_true", help="calibrate on the other half of the photos and measure on the first")
    ap.add_argument("--emulate-avx2", action="store_true",
                    help="run OpenVINO as on an AVX2-only CPU (oneDNN's ONEDNN_MAX_CPU_ISA); other runtimes are unaffected")
    args = ap.parse_args()
    if args.emulate_avx2:
        os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"  # read when OpenVINO's CPU plugin loads, after this
    spec = get_spec("lite0")
    pre = spec.preprocess
    model = fix_same_padding(load(spec).model.eval(), pre.image_size)
    ps = photos()
    calib_photos, eval_photos = (ps[1::2], ps[0::2]) if args.swap else (ps[0::2], ps[1::2])
    calib = arrays(calib_photos, args.per_photo, pre, 0)[: args.calib]
    x = arrays(eval_photos, args.per_photo, pre, 1)
    with torch.no_grad():
        logits = torch.cat([model(torch.from_numpy(x[i : i + 32])) for i in range(0, len(x), 32)])
    reference, confident = logits.argmax(1).numpy(), (logits.softmax(1).max(1).values >= 0.5).numpy()
    print(f"host int8 ISA {detect()}; {len(ps)} photos: {len(calib)} calibration crops, {len(x)} measured crops "
          f"of {len(eval_photos)} other photos")
    example = torch.zeros(1, 3, pre.image_size, pre.image_size)
    ranked = []
    if args.keep_float != "0":
        from pipeline.quant.sensitivity import layer_sensitivity
        from targets.fold import fold_batchnorm

        folded = fold_batchnorm(model, example)
        ranked = [r["layer"] for r in sorted(layer_sensitivity(folded, calib, 32), key=lambda r: -r["sensitivity"])]
        print("most sensitive:", ", ".join(ranked[:10]))
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.targets.split(","):
            target = targets.get_target(name)
            fp32 = target.convert_float(model, example, Path(tmp) / f"{name}-fp32")
            for isa in args.isa.split(","):
                quant = make_config(name, {"board.isa": isa, **dict(kv.split("=", 1) for kv in args.set)}).quant
                for keep in map(int, args.keep_float.split(",")):
                    t0 = time.perf_counter()
                    int8 = target.quantize(model, fp32, calib, quant, Path(tmp) / f"{name}-{isa}-{keep}", exclude=tuple(ranked[:keep]),
                                           isa=isa)
                    print(f"{name:9} made for {isa:12} {target.recipe(quant, isa)}, {keep} layers kept out of int8: agreement "
                          f"{agreement(target.runner(int8), x, reference, confident)} [{time.perf_counter() - t0:.0f} s]", flush=True)
                if args.qat_epochs:
                    measure_distilled(target, model, example, calib, quant, isa, args.qat_epochs, Path(tmp) / f"{name}-{isa}-qat",
                                      x, reference, confident)


def measure_distilled(target, model, example, calib, quant, isa, epochs, path, x, reference, confident) -> None:
    """QUANT=qat without labels: PTQ's initialisation, then distillation from float on the calibration crops alone."""
    from pipeline.quant import qat

    t0 = time.perf_counter()
    quant = dataclasses.replace(quant, qat_epochs=epochs)
    folded, qmodel = qat.prepare(model, calib, quant, target.qat_preset, isa)
    history = qat.finetune(qmodel, folded, qat.Unlabelled(calib), quant)
    int8 = target.export_qat(qmodel, folded, example, calib, quant, path, isa=isa)
    print(f"{target.name:9} made for {isa:12} label-free QAT, {epochs} epoch(s) at lr {quant.qat_lr:g} "
          f"(train agreement {history[-1]['train_agreement_with_float']:.3f}): agreement "
          f"{agreement(target.runner(int8), x, reference, confident)} [{time.perf_counter() - t0:.0f} s]", flush=True)


if __name__ == "__main__":
    main()

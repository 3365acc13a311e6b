"""The README's commands through the Makefile, for each target (heavier: `make test-e2e`)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import write_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.e2e
@pytest.mark.parametrize("target,model", [("jetson", "b1"), ("onnx", "b0"), ("openvino", "b1"), ("tflite", "b0")])
def test_make_deploy(target, model, colour_data, tmp_path):
    """`make deploy TARGET=... MODEL=...` with a checkpoint the test trains (hub weights are offline here)."""
    weights = write_tiny_checkpoint(model, tmp_path)
    out = tmp_path / "run"
    cmd = [
        "make", "-C", str(REPO), "deploy", f"TARGET={target}", f"MODEL={model}", f"WEIGHTS={weights}",
        f"DATA={colour_data}", "IMAGE_SIZE=64", "CALIB_SIZE=32", f"OUT={out}", "SET=runs=20",
        "MAX_DROP=5",  # 48 images: one flipped image is 2.08 points on a model trained for 100 steps
    ]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] and report["model"] == model and report["target"] == target
    assert report["accuracy"]["top1_agreement"] >= 0.85 and report["int8_ops"]["int8_macs_share"] > 0.97

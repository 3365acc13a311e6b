"""The README's commands through the Makefile, for each target (heavier: `make test-e2e`)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import write_tiny_checkpoint, ships

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
    assert ships(report) and report["model"] == model and report["target"] == target
    assert report["accuracy"]["top1_agreement"] >= 0.85 and report["int8_ops"]["int8_macs_share"] > 0.97


def test_make_passes_quant_and_train_data_through():
    """QUANT= and TRAIN_DATA= reach the CLI (dry run: make prints the command it would run)."""
    r = subprocess.run(["make", "-s", "-n", "-C", str(REPO), "deploy", "TARGET=jetson", "QUANT=qat", "TRAIN_DATA=/d/train",
                        "-o", "setup", "-o", ".setup.stamp"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if "-m pipeline deploy" in x)
    assert "--target jetson" in line and "--quant qat" in line and "--train-data /d/train" in line


@pytest.mark.e2e
def test_make_deploy_qat_jetson(colour_data, tmp_path):
    weights = write_tiny_checkpoint("b0", tmp_path)
    out = tmp_path / "run"
    cmd = ["make", "-C", str(REPO), "deploy", "TARGET=jetson", "MODEL=b0", f"WEIGHTS={weights}", f"DATA={colour_data}",
           "QUANT=qat", "IMAGE_SIZE=64", "CALIB_SIZE=32", f"OUT={out}", "SET=runs=20 quant.qat_epochs=1", "MAX_DROP=5"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert ships(report) and report["quant"] == "int8-qat" and report["int8_ops"]["nonzero_zero_points"] == 0 == report["int8_ops"]["uint8_quantizers"]

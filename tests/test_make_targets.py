"""The README's commands through the Makefile, for each target (heavier: `make test-e2e`)."""
from __future__ import annotations

import json
import subprocess
import sys
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


def _argv(tmp_path, *make_args: str) -> list[str]:
    """The arguments a real `make` hands the CLI: PYTHON= a script that prints its argv as JSON (setup bypassed)."""
    dump = tmp_path / "argv.py"
    dump.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    dump.chmod(0o755)
    r = subprocess.run(["make", "-s", "-C", str(REPO), *make_args, f"PYTHON={dump}", "-o", "setup"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


def _after(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_make_passes_quant_and_train_data_through(tmp_path):
    argv = _argv(tmp_path, "deploy", "TARGET=jetson", "QUANT=qat", "TRAIN_DATA=/d/train")
    assert argv[:3] == ["-m", "pipeline", "deploy"]
    assert _after(argv, "--target") == ["jetson"] and _after(argv, "--quant") == ["qat"] and _after(argv, "--train-data") == ["/d/train"]


def test_make_values_with_spaces_and_quotes_stay_one_argument(tmp_path):
    """DATA="/data/my set/val", a GStreamer SOURCE, quotes: each value is one argument; SET is still a list."""
    odd = "/data/my set/it's \"val\""
    argv = _argv(tmp_path, "deploy", f"DATA={odd}", f"CALIB={odd}", f"TRAIN_DATA={odd}", f"WEIGHTS={odd}", f"OUT={odd}",
                 "SET=threads=4 quant.preset=performance", "DEVICE=me@board", f"DEVICE_DIR={odd}", f"SSH_KEY={odd}",
                 "SOURCE=v4l2src device=/dev/video0 ! videoconvert ! appsink")
    for flag in ("--data", "--calib", "--train-data", "--weights", "--out", "--device-dir", "--ssh-key"):
        assert _after(argv, flag) == [odd], flag
    assert _after(argv, "--set") == ["threads=4", "quant.preset=performance"]
    assert _after(argv, "--source") == ["v4l2src device=/dev/video0 ! videoconvert ! appsink"]
    run = _argv(tmp_path, "run", "SOURCE=v4l2src device=/dev/video0 ! appsink", "RUN_ARGS=--headless --topk 3")
    assert _after(run, "--source") == ["v4l2src device=/dev/video0 ! appsink"] and run[run.index("--") + 1:] == ["--headless", "--topk", "3"]
    train = _argv(tmp_path, "train", f"DATA={odd}", f"VAL={odd}", f"OUT={odd}")
    assert _after(train, "--data") == _after(train, "--val") == _after(train, "--out") == [odd]
    assert _after(_argv(tmp_path, "bench", f"DATA={odd}"), "--data") == [odd]


def test_make_setup_with_a_system_python_is_one_line(tmp_path):
    """PYTHON=/usr/bin/python3 on Debian: pip's externally-managed-environment refusal becomes one line naming the fix."""
    system = Path("/usr/bin/python3")
    probe = "import sysconfig, os, pip; print(os.path.exists(os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')))"
    r = subprocess.run([str(system), "-c", probe], capture_output=True, text=True) if system.exists() else None
    if r is None or r.stdout.strip() != "True":
        pytest.skip("no externally managed system Python with pip here (Debian 12+: /usr/bin/python3)")
    env_dir = tmp_path / "env"
    (env_dir / "bin").mkdir(parents=True)
    (env_dir / "bin" / "python").touch()  # the venv "exists": make goes straight to pip
    r = subprocess.run(["make", "-s", "-C", str(REPO), "setup", f"PYTHON={system}", f"ENV_DIR={env_dir}"],
                       capture_output=True, text=True, timeout=120)
    errors = [x for x in r.stderr.splitlines() if not x.startswith("make")]
    assert r.returncode != 0 and len(errors) == 1, r.stderr
    assert "externally-managed-environment" in errors[0] and "leave PYTHON unset" in errors[0]
    assert not (env_dir / ".effnet-edge-setup").exists()


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

"""The bundle and the camera program, run in a virtual environment without torch, on real video files."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from board import MjpegServer, board_venv, write_video
from conftest import CLASSES, make_image
from edge.bundle import Bundle
from pipeline.cli import main

REQUIRED_KEYS = {"frame", "t", "index", "label", "score", "topk", "latency_ms", "age_ms"}


@pytest.fixture(scope="module", params=["openvino", "onnx"])
def deployed(request, tiny_checkpoint, colour_data, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"deploy-{request.param}") / "run"
    args = ["deploy", "--target", request.param, "--model", "b0", "--weights", str(tiny_checkpoint),
            "--data", str(colour_data), "--image-size", "64", "--calib-size", "16", "--out", str(out),
            "--set", "runs=5", "--set", "warmup=2"]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def board_python():
    return board_venv()


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> tuple[Path, list[int]]:
    """60 frames, 15 of each colour class in turn: known content."""
    rng = np.random.default_rng(21)
    labels = [i // 15 for i in range(60)]
    frames = [cv2.resize(make_image(CLASSES[c], rng), (160, 120)) for c in labels]
    return write_video(tmp_path_factory.mktemp("video") / "colours.avi", frames), labels


def run_board(board_python, bundle: Path, *args, timeout=120, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": str(board_python)}
    return subprocess.run([str(bundle / "run.sh"), *args], capture_output=True, text=True, env=env, timeout=timeout, **kw)


def summary_of(stderr: str) -> dict:
    line = next(l for l in stderr.splitlines() if l.startswith("summary: "))
    return json.loads(line[len("summary: "):])


def test_board_venv_has_no_torch(board_python):
    for module in ("torch", "nncf", "torchvision"):
        r = subprocess.run([str(board_python), "-c", f"import {module}"], capture_output=True)
        assert r.returncode != 0, f"{module} is importable in the board venv"


def test_bundle_layout(deployed):
    bundle = deployed / "bundle"
    for name in ("config.json", "labels.json", "labels.txt", "run.sh", "README.md", "requirements.txt",
                 "effnet-edge.service", "install-service.sh", "edge/__main__.py", "edge/loop.py", "edge/runners.py"):
        assert (bundle / name).is_file(), name
    config = json.loads((bundle / "config.json").read_text())
    assert (bundle / config["artifact"]).is_file() and (bundle / config["float_artifact"]).is_file()
    assert config["preprocess"]["image_size"] == 64 and config["host"]["accuracy"]["int8"]["top1"] >= 0.85
    reqs = (bundle / "requirements.txt").read_text()
    assert "torch" not in reqs and "nncf" not in reqs and config["runtime"] in reqs
    assert "ExecStart=@BUNDLE@/run.sh --headless" in (bundle / "effnet-edge.service").read_text()
    with tarfile.open(deployed / "bundle.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"bundle/run.sh", "bundle/config.json", "bundle/edge/loop.py", f"bundle/{config['artifact']}"} <= names
    from test_architecture import HOST_ONLY, forbidden_imports

    assert not forbidden_imports(bundle / "edge", HOST_ONLY)  # `import torch` and `from torch import ...` alike


def test_camera_on_video_matches_validation_path(deployed, board_python, video, tmp_path):
    path, labels = video
    bundle = deployed / "bundle"
    out = tmp_path / "out.jsonl"
    r = run_board(board_python, bundle, "--source", str(path), "--headless", "--json", str(out), "--topk", "3")
    assert r.returncode == 0, r.stderr
    # 48 host images cannot resolve MAX_DROP=1: the start-up line says the model is unverified.
    assert json.loads((bundle / "config.json").read_text())["verified"] is False
    assert "(unverified:" in r.stderr.splitlines()[0]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 60 and all(REQUIRED_KEYS <= set(rec) for rec in records)
    assert [rec["frame"] for rec in records] == list(range(60))  # a file is read in order, every frame
    assert all(len(rec["topk"]) == 3 and rec["topk"][0]["index"] == rec["index"] for rec in records)
    # The validation path on the same decoded frames: same preprocessing, same runtime, same answers.
    b = Bundle.load(bundle)
    runner = b.runner("int8")
    cap = cv2.VideoCapture(str(path))
    expected = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        expected.append(int(runner.infer(b.preprocess(frame)[None])[0].argmax()))
    assert [rec["index"] for rec in records] == expected
    # a tiny int8 model: its exact answers vary with the CPU's int8 arithmetic, so a loose bar
    assert np.mean([rec["index"] == c for rec, c in zip(records, labels)]) >= 0.75
    summary = summary_of(r.stderr)
    assert summary["classified"] == 60 and summary["corrupt"] == 0 and summary["fps"] > 0
    assert summary["latency_ms"]["p50"] > 0 and summary["age_ms"]["p99"] >= summary["age_ms"]["p50"]


def test_stale_frames_are_dropped_when_the_model_is_slower(deployed, board_python, tmp_path):
    rng = np.random.default_rng(5)
    frames = [cv2.resize(make_image(CLASSES[i % 4], rng), (160, 120)) for i in range(400)]
    path = write_video(tmp_path / "fast.avi", frames, fps=30)
    out = tmp_path / "out.jsonl"
    # Played as a 4000 fps camera: one frame each 0.25 ms, far faster than inference.
    r = run_board(board_python, deployed / "bundle", "--source", str(path), "--realtime", "--fps", "4000",
                  "--headless", "--json", str(out))
    assert r.returncode == 0, r.stderr
    summary = summary_of(r.stderr)
    indices = [json.loads(line)["frame"] for line in out.read_text().splitlines()]
    assert summary["dropped_stale"] > 0 and summary["classified"] < summary["read"] == 400
    assert indices == sorted(indices) and len(set(np.diff(indices))) > 1  # gaps: stale frames skipped
    assert summary["classified"] + summary["dropped_stale"] == summary["read"]


def test_camera_faults(deployed, board_python, tmp_path):
    bundle = deployed / "bundle"
    r = run_board(board_python, bundle, "--source", "/dev/video99", "--headless")
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: cannot open source '/dev/video99'")
    r = run_board(board_python, bundle, "--source", str(tmp_path / "missing.mp4"), "--headless")
    assert r.returncode == 2 and "is not a camera index" in r.stderr and "Traceback" not in r.stderr
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        cv2.imwrite(str(folder / f"{i}.png"), make_image(CLASSES[i % 4], rng))
    (folder / "2.png").write_bytes(b"not a png")  # a corrupt frame
    r = run_board(board_python, bundle, "--source", str(folder), "--headless", "--json", str(tmp_path / "o.jsonl"))
    assert r.returncode == 0, r.stderr
    s = summary_of(r.stderr)
    assert s["corrupt"] == 1 and s["classified"] == 4


def test_sigterm_exits_cleanly_with_summary(deployed, board_python, video, tmp_path):
    path, _ = video
    env = {**os.environ, "PYTHON": str(board_python)}
    proc = subprocess.Popen([str(deployed / "bundle" / "run.sh"), "--source", str(path), "--realtime", "--fps", "5",
                             "--headless", "--json", str(tmp_path / "o.jsonl")], stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(4)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    s = summary_of(err)
    assert s["stopped_by_signal"] is True and 0 < s["classified"] < 60


def test_reconnects_with_backoff_when_the_stream_drops(deployed, board_python, tmp_path):
    server = MjpegServer(make_image("red", np.random.default_rng(1)), frames_per_connection=15)
    try:
        r = run_board(board_python, deployed / "bundle", "--source", server.url, "--headless", "--max-frames", "40",
                      "--json", str(tmp_path / "o.jsonl"))
    finally:
        server.close()
    assert r.returncode == 0, r.stderr
    s = summary_of(r.stderr)
    assert s["reconnects"] >= 2 and s["classified"] == 40
    assert "reconnect attempt" in r.stderr


def test_gives_up_when_the_stream_stays_down(deployed, board_python, tmp_path):
    server = MjpegServer(make_image("red", np.random.default_rng(1)), frames_per_connection=10)
    env = {**os.environ, "PYTHON": str(board_python)}
    proc = subprocess.Popen([str(deployed / "bundle" / "run.sh"), "--source", server.url, "--headless", "--reconnect", "2",
                             "--json", str(tmp_path / "o.jsonl")], stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(1.0)
    server.close()  # the camera is gone for good
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    s = summary_of(err)
    assert s["reconnects"] >= 1 and "reconnect attempts failed" in s["error"]


def test_validate_on_the_board_matches_the_host(deployed, board_python, colour_data, tmp_path):
    r = run_board(board_python, deployed / "bundle", "validate", "--data", str(colour_data), "--runs", "5",
                  "--out", str(tmp_path / "v"))
    assert r.returncode == 0, r.stdout + r.stderr
    board = json.loads((tmp_path / "v" / "report.json").read_text())
    host = json.loads((deployed / "report.json").read_text())
    for key in ("model", "target", "quant", "verdict"):
        assert board[key] == host[key]
    assert board["accuracy"]["images"] == host["accuracy"]["images"]
    assert board["accuracy"]["int8"] == host["accuracy"]["int8"]
    assert board["accuracy"]["float"] == host["accuracy"]["float_artifact"]
    assert board["latency_ms"]["p50"] > 0 and board["size_mb"]["int8"] == host["size_mb"]["int8"]
    assert "on the device" in (tmp_path / "v" / "report.md").read_text()
    # The board applies the host's rule: 48 images leave MAX_DROP=1 unresolved, which --strict fails.
    assert board["verdict"] == "inconclusive" and board["fidelity"]["images_to_resolve"] > 48
    r = run_board(board_python, deployed / "bundle", "validate", "--data", str(colour_data), "--runs", "2", "--strict",
                  "--out", str(tmp_path / "s"))
    assert r.returncode == 3 and r.stdout.startswith("INCONCLUSIVE (STRICT: counts as a failure):"), r.stdout + r.stderr


def test_make_run_uses_the_deployed_bundle(deployed, video):
    path, _ = video
    r = subprocess.run([sys.executable, "-m", "pipeline", "run", "--out", str(deployed), "--source", str(path), "--",
                        "--headless", "--max-frames", "5", "--json", "/dev/null"],
                       capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert r.returncode == 0, r.stderr
    assert summary_of(r.stderr)["classified"] == 5


def test_temporal_smoothing_lags_at_a_class_change(deployed, board_python, video, tmp_path):
    path, labels = video
    runs = {}
    for smooth in (0, 8):
        out = tmp_path / f"s{smooth}.jsonl"
        r = run_board(board_python, deployed / "bundle", "--source", str(path), "--headless", "--json", str(out), "--smooth", str(smooth))
        assert r.returncode == 0, r.stderr
        runs[smooth] = [json.loads(line) for line in out.read_text().splitlines()]
    assert labels[14] != labels[15]  # the video changes class at frame 15

    def switch(records):
        return next(i for i in range(15, 30) if records[i]["index"] == labels[15])

    # The smoothed output follows the change a few frames later than the raw one, and flickers no more.
    assert switch(runs[0]) < switch(runs[8]) < 30

    def flips(records):
        return sum(a["index"] != b["index"] for a, b in zip(records, records[1:]))

    assert flips(runs[8]) <= flips(runs[0])

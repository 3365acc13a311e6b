"""The bundle and the camera program, run in a virtual environment without torch, on real video files."""
from __future__ import annotations

import json
import os
import re
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
from conftest import CLASSES, make_image, write_folder
from edge.bundle import Bundle
from edge.preprocess import Preprocess

REQUIRED_KEYS = {"frame", "t", "index", "label", "score", "topk", "latency_ms", "age_ms", "capture_ms"}


# The camera loop, its sources and faults are the same code whatever the runtime: those tests run on one
# (ONE_RUNTIME); the layout, the camera-vs-validation path, validate and a missing runtime run on both.
ONE_RUNTIME = pytest.mark.parametrize("deployed", ["openvino"], indirect=True)


@pytest.fixture(scope="module", params=["openvino", "onnx"])
def deployed(request, deployed_tiny):
    return deployed_tiny(request.param)


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


def run_board(board_python, bundle: Path, *args, timeout=120, env=None, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env or {}), "PYTHON": str(board_python)}
    return subprocess.run([str(bundle / "run.sh"), *args], capture_output=True, text=True, env=env, timeout=timeout, **kw)


def one_line(r: subprocess.CompletedProcess) -> str:
    """The one line a mistake prints on stderr (no traceback, nothing else), with nothing on stdout."""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and not r.stdout, r.stdout + r.stderr
    return lines[0]


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
                 "effnet-edge.service", "install-service.sh", "edge/__main__.py", "edge/loop.py", "edge/runners/__init__.py",
                 "edge/runners/openvino.py", "edge/runners/onnxruntime.py", "edge/runners/tensorrt.py"):
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
    assert len(records) == 60 and all(REQUIRED_KEYS <= set(rec) and "file" not in rec for rec in records)
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
        expected.append(int(runner.infer(b.model_input(frame)[None])[0].argmax()))
    assert [rec["index"] for rec in records] == expected
    # a tiny int8 model: its exact answers vary with the CPU's int8 arithmetic, so a loose bar
    assert np.mean([rec["index"] == c for rec, c in zip(records, labels)]) >= 0.75
    summary = summary_of(r.stderr)
    assert summary["classified"] == 60 and summary["corrupt"] == 0 and summary["fps"] > 0
    assert summary["latency_ms"]["p50"] > 0 and summary["age_ms"]["p99"] >= summary["age_ms"]["p50"]
    assert all(rec["capture_ms"] > 0 for rec in records) and summary["capture_ms"]["p50"] > 0  # the read, timed per frame


@ONE_RUNTIME
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


@ONE_RUNTIME
def test_camera_faults(deployed, board_python, tmp_path):
    bundle = deployed / "bundle"
    r = run_board(board_python, bundle, "--source", "/dev/video99", "--headless")
    assert r.returncode == 1 and one_line(r).startswith("error: cannot open source '/dev/video99'")  # not OpenCV's warnings too
    r = run_board(board_python, bundle, "--source", str(tmp_path / "missing.mp4"), "--headless")
    assert r.returncode == 1 and "is not a camera index" in one_line(r)
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


@ONE_RUNTIME
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


@ONE_RUNTIME
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


@ONE_RUNTIME
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
    # the bundle's artifact carries its preprocessing (a few constants and ops) beside the host's
    assert board["latency_ms"]["p50"] > 0 and board["size_mb"]["int8"] == pytest.approx(host["size_mb"]["int8"], rel=0.01)
    assert "on the device" in (tmp_path / "v" / "report.md").read_text()
    # The board applies the host's rule: 48 images leave MAX_DROP=1 unresolved, which --strict fails.
    assert board["verdict"] == "inconclusive" and board["fidelity"]["images_to_resolve"] > 48
    r = run_board(board_python, deployed / "bundle", "validate", "--data", str(colour_data), "--runs", "2", "--strict",
                  "--out", str(tmp_path / "s"))
    assert r.returncode == 3 and r.stdout.startswith("INCONCLUSIVE (STRICT: counts as a failure):"), r.stdout + r.stderr


@ONE_RUNTIME
def test_make_run_uses_the_deployed_bundle(deployed, video):
    path, _ = video
    r = subprocess.run([sys.executable, "-m", "pipeline", "run", "--out", str(deployed), "--source", str(path), "--",
                        "--headless", "--max-frames", "5", "--json", "/dev/null"],
                       capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert r.returncode == 0, r.stderr
    assert summary_of(r.stderr)["classified"] == 5


@ONE_RUNTIME
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


def python_with_only(board_python: Path, dists: list[str], where: Path) -> Path:
    """A Python that has only `dists` of the board venv (linked, not installed again): a board that lacks the rest."""
    site = next(board_python.parent.parent.glob("lib/python*/site-packages"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    dest = next(where.glob("lib/python*/site-packages"))
    for dist in dists:
        record = next(site.glob(f"{dist}-*.dist-info")) / "RECORD"
        for top in {line.split(",")[0].split("/")[0] for line in record.read_text().splitlines()} - {"..", ""}:
            (dest / top).symlink_to(site / top)
    return where / "bin" / "python"


def requirement(bundle: Path, package: str) -> str:
    """The bundle's requirements.txt line for a package, as pip takes it."""
    return next(line.split("#")[0].strip() for line in (bundle / "requirements.txt").read_text().splitlines()
                if line.startswith(package))


@ONE_RUNTIME
def test_a_python_without_opencv_is_one_line(deployed, board_python, video, tmp_path):
    """The bundle run with a Python that has numpy and not OpenCV: the fix the bundle's requirements name, nothing written."""
    bundle, out = deployed / "bundle", tmp_path / "out.jsonl"
    out.write_text("earlier\n")
    python = python_with_only(board_python, ["numpy"], tmp_path / "py")
    r = run_board(python, bundle, "--source", str(video[0]), "--headless", "--json", str(out))
    line = one_line(r)
    assert r.returncode == 1 and line.startswith(f"error: {python} has no OpenCV"), line
    assert f"pip install '{requirement(bundle, 'opencv-python-headless')}'" in line and "sudo apt install python3-opencv" in line
    assert out.read_text() == "earlier\n"
    r = run_board(python, bundle, "--source", str(video[0]), "--headless", "--debug")
    assert r.returncode == 1 and "Traceback" in r.stderr and "ModuleNotFoundError: No module named 'cv2'" in r.stderr


def test_a_missing_runtime_is_one_line(deployed, board_python, video, colour_data, tmp_path):
    """numpy and OpenCV but not the bundle's runtime: the camera program and validate name its requirements.txt line."""
    bundle, out = deployed / "bundle", tmp_path / "out.jsonl"
    out.write_text("earlier\n")
    runtime = json.loads((bundle / "config.json").read_text())["runtime"]
    python = python_with_only(board_python, ["numpy", "opencv_python_headless"], tmp_path / "py")
    for args in (["--source", str(video[0]), "--headless", "--json", str(out)],
                 ["validate", "--data", str(colour_data), "--out", str(tmp_path / "v")]):
        r = run_board(python, bundle, *args)
        line = one_line(r)
        assert r.returncode == 1 and f"pip install '{requirement(bundle, runtime)}' (as this bundle's requirements.txt says)" in line, line
    assert out.read_text() == "earlier\n" and not (tmp_path / "v").exists()


@pytest.mark.parametrize("deployed", ["onnx"], indirect=True)
def test_a_jetson_bundle_without_tensorrt_is_one_line(deployed, board_python, video, tmp_path):
    """The Jetson bundle as the host writes it (the ONNX deploy's files, the jetson target's requirements and runtime),
    run by a Python without TensorRT: JetPack's package and pip's, not a traceback."""
    import targets
    from pipeline.ship.bundle import write_bundle
    from pipeline.config import DeployConfig
    from pipeline.model.family import get_spec

    if subprocess.run([str(board_python), "-c", "import tensorrt"], capture_output=True).returncode == 0:
        pytest.skip("TensorRT is installed in the board venv")
    src, jetson = deployed / "bundle", tmp_path / "jetson"
    config = json.loads((src / "config.json").read_text())
    write_bundle(jetson, DeployConfig(target="jetson"), get_spec("b0"), targets.get_target("jetson"),
                 Preprocess.from_dict(config["preprocess"]), CLASSES, json.loads((deployed / "report.json").read_text()),
                 src / config["artifact"], src / config["float_artifact"], config["input"] == "pixels")
    assert json.loads((jetson / "config.json").read_text())["runtime"] == "tensorrt"
    r = run_board(board_python, jetson, "--source", str(video[0]), "--headless")
    line = one_line(r)
    assert r.returncode == 1 and "has no TensorRT" in line, line
    assert "sudo apt install python3-libnvinfer" in line and "pip install tensorrt" in line


@ONE_RUNTIME
def test_help_lists_every_command_as_the_readme_does(deployed, board_python):
    """`./run.sh --help` lists each command with its line, the bundle's README the same ones, and every option the
    README names is one that a command takes."""
    import targets

    bundle = deployed / "bundle"
    r = run_board(board_python, bundle, "--help", env={"COLUMNS": "300"})  # one line each, unwrapped
    assert r.returncode == 0, r.stderr
    section = r.stdout.split("commands:\n", 1)[1].split("\n\n", 1)[0]
    listed = dict(re.findall(r"^  (\w+) +(.+)$", section, re.M))
    readme = (bundle / "README.md").read_text()
    assert len(listed) >= 2 and dict(re.findall(r"^- `\./run\.sh (\w+)`: (.+)\.$", readme, re.M)) == listed
    helps = ""
    for name in listed:
        r = run_board(board_python, bundle, name, "--help")
        assert r.returncode == 0, r.stderr
        helps += r.stdout
    install = targets.get_target(json.loads((bundle / "config.json").read_text())["target"]).device_install
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", readme.replace(install, "")))  # the install line's are pip's
    assert {"--source", "--mqtt", "--data", "--mqtt-ca"} <= named and not {o for o in named if o not in helps}


@ONE_RUNTIME
def test_image_sources_name_the_file(deployed, board_python, tmp_path):
    """A folder of real image files (in class subfolders, one corrupt) and a single image: each line names its file."""
    bundle, out = deployed / "bundle", tmp_path / "out.jsonl"
    folder = write_folder(tmp_path / "photos", per_class=3, seed=3)
    (folder / "green" / "green_1.png").write_bytes(b"not a png")
    r = run_board(board_python, bundle, "--source", str(folder), "--headless", "--json", str(out))
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))
    assert [rec["file"] for rec in records] == [f for f in files if f != "green/green_1.png"] and len(records) == 11
    r = run_board(board_python, bundle, "--source", str(folder / "blue" / "blue_2.png"), "--headless")
    assert r.returncode == 0, r.stderr
    (single,) = [json.loads(line) for line in r.stdout.splitlines()]
    by_file = {rec["file"]: rec for rec in records}
    assert single["file"] == "blue_2.png" and single["frame"] == 0
    assert single["topk"] == by_file["blue/blue_2.png"]["topk"]  # the same file, the same decision


def test_throughput_mode_keeps_frame_order_and_answers(deployed, board_python, video, tmp_path):
    """--mode throughput: several frames in flight (OpenVINO's AsyncInferQueue, ONNX Runtime's lanes), every
    decision in frame order with the answers one frame at a time gives; a bad --in-flight is one line."""
    path, _ = video
    bundle = deployed / "bundle"
    out = tmp_path / "throughput.jsonl"
    r = run_board(board_python, bundle, "--source", str(path), "--headless", "--json", str(out), "--mode", "throughput",
                  "--in-flight", "3")
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [rec["frame"] for rec in records] == list(range(60))
    summary = summary_of(r.stderr)
    assert summary["mode"] == "throughput" and summary["in_flight"] == 3 and summary["classified"] == 60
    assert "throughput: 3" in r.stderr.splitlines()[0]
    b = Bundle.load(bundle)
    runner, cap, one_at_a_time = b.runner("int8"), cv2.VideoCapture(str(path)), []
    while (frame := cap.read()[1]) is not None:
        one_at_a_time.append(int(runner.infer(b.model_input(frame)[None])[0].argmax()))
    assert [rec["index"] for rec in records] == one_at_a_time
    r = run_board(board_python, bundle, "--source", str(path), "--headless", "--in-flight", "2")
    assert r.returncode == 1 and "with --mode throughput" in one_line(r)


@ONE_RUNTIME
def test_board_sustained_run(deployed, board_python, tmp_path):
    """./run.sh bench --minutes: a line per window, the verdict, and the JSON, on the board's own Python (no matplotlib
    there: the plot is left out, the figures are all in the JSON); absent sensors are said and the run carries on."""
    r = run_board(board_python, deployed / "bundle", "bench", "--minutes", str(3 / 60), "--window", "1",
                  "--out", str(tmp_path / "s"))
    assert r.returncode == 0, r.stderr
    windows = [line for line in r.stderr.splitlines() if line.startswith("[sustained] window ")]
    assert len(windows) == 3 and "p99" in windows[0] and "images/s" in windows[0]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    result = json.loads((tmp_path / "s.json").read_text())
    assert out["verdict"] == result["verdict"] and result["verdict"].split(":")[0] in ("steady", "SLOWER")
    assert len(result["windows"]) == 3 and result["runtime"].startswith("openvino")
    assert all(w["images"] > 0 for w in result["windows"])
    assert (out["plot"] is None) == (not (tmp_path / "s.png").exists())
    r = run_board(board_python, deployed / "bundle", "bench", "--minutes", "0")
    assert r.returncode == 1 and "must be positive" in one_line(r)

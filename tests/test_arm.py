"""`make test-arm`: the Raspberry Pi bundle on Arm binaries, under QEMU user mode, against the host.

For a Pi 4 CPU (cortex-a72: no dot product) and a Pi 5 CPU (cortex-a76: dot product), inside a clean
Debian arm64 root with the bundle's requirements from aarch64 wheels, for the rpi bundle (LiteRT) and
the onnx and openvino bundles, whose runtimes also publish aarch64 wheels:
- the int8 decisions on the host's own input tensors must be the host's, image for image (a difference
  there is Arm arithmetic, not decoding: the test fails and names the images). OpenVINO is the
  exception: on Arm its CPU plugin runs part of an int8 IR in f32/f16, so there the agreement is
  reported, with the layers' executed precisions, and only a floor is asserted;
- on the real path, where the board's OpenCV decodes and resizes, the agreement with the host is
  reported with its interval (decoding may differ by 1/255 and flip a close call);
- `./run.sh validate` and the camera program on a short video run there, and report the board's ISA
  and what LiteRT really ran.
Not in the default run (marker arm). Set-up needs root and Debian's mirror; without them each test
skips with the one-line reason. Timings under emulation mean nothing and are not looked at.
Environment: ARM_MODEL (default lite0), ARM_TARGETS (default "rpi onnx openvino"), ARM_PHOTOS (default 64),
EFFNET_ARM_CACHE, ARM_REPORT.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.emulation import arm64
from board import write_video
from edge.bundle import Bundle
from edge.metrics import wilson
from edge.preprocess import read_images

pytestmark = pytest.mark.arm

ROOT = Path(__file__).resolve().parents[1]
CPUS = {"cortex-a72": ("Raspberry Pi 4", "arm-neon"), "cortex-a76": ("Raspberry Pi 5", "arm-dotprod")}
MODEL = os.environ.get("ARM_MODEL", "lite0")
TARGETS = os.environ.get("ARM_TARGETS", "rpi onnx openvino").split()
CASES = [(t, cpu) for t in TARGETS for cpu in CPUS]
PHOTO_LIMIT = int(os.environ.get("ARM_PHOTOS", "64"))
PHOTO_DIRS = ("/usr/share/backgrounds", "/usr/share/wallpapers")
THREADS = "2"  # this host's cores: more emulated threads only take turns
# OpenVINO runs about 10x slower than LiteRT under emulation (its Arm int8 IR is partly float): fewer photos.
PHOTOS_OF = {"openvino": 16}
RESULTS: dict = {}  # what each test measured, written to ARM_REPORT at the end


def _photo_paths() -> list[Path]:
    """scikit-image's photos, then Debian's wallpapers where installed; one file per distinct picture."""
    from pipeline.data.sample import CALIBRATION_PHOTOS, _skimage_photo

    found = [_skimage_photo(p) for p in CALIBRATION_PHOTOS]
    for d in PHOTO_DIRS:
        found += sorted(p for p in Path(d).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    keep, seen = [], set()
    for p in found:
        img = cv2.imread(str(p))
        if img is None:
            continue
        digest = hashlib.sha256(cv2.resize(img, (32, 32), interpolation=cv2.INTER_AREA).tobytes()).hexdigest()
        if digest not in seen:  # the same wallpaper at several resolutions is one picture
            seen.add(digest)
            keep.append((p, img))
    return keep[:PHOTO_LIMIT]


def _write_photos(dest: Path) -> list[str]:
    """At most 1024 px a side, in their own format (JPEG stays JPEG: the board's libjpeg decodes it)."""
    dest.mkdir(parents=True)
    names = []
    for i, (path, img) in enumerate(_photo_paths()):
        scale = 1024 / max(img.shape[:2])
        if scale < 1:
            img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        name = f"{i:03d}-{path.stem[:40]}{'.png' if path.suffix.lower() == '.png' else '.jpg'}"
        cv2.imwrite(str(dest / name), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        names.append(name)
    return sorted(names)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """The folder the board sees as /work: photos, a labelled set, a video, then the bundles and the host's tensors."""
    from pipeline.data.sample import sample_folder

    work = tmp_path_factory.mktemp("arm-work")
    _write_photos(work / "photos")
    sample_folder(work / "data")
    frames = [cv2.resize(cv2.imread(str(p)), (640, 480), interpolation=cv2.INTER_AREA)
              for p in sorted((work / "photos").iterdir())[:12]]
    write_video(work / "clip.avi", frames, fps=10)
    return work


def _cached(make):
    """A module fixture's value per target, made on first use."""
    made: dict = {}
    return lambda target: made[target] if target in made else made.setdefault(target, make(target))


@pytest.fixture(scope="module")
def bundle(work):
    """target -> /work/bundle-<target>: MODEL deployed for it here (cached stages: a re-run deploys nothing)."""
    from pipeline.cli import main

    def make(target: str) -> Path:
        run = arm64.cache_dir() / "runs" / f"{MODEL}-{target}"
        assert main(["deploy", "--target", target, "--model", MODEL, "--out", str(run)]) == 0
        shutil.copytree(run / "bundle", work / f"bundle-{target}")
        return work / f"bundle-{target}"

    return _cached(make)


@pytest.fixture(scope="module")
def host(work, bundle):
    """target -> the host's tensors (saved for the board as /work/x-<target>.npy) and its int8 decisions."""
    def make(target: str) -> dict:
        b = Bundle.load(bundle(target))
        files = sorted((work / "photos").iterdir())[: PHOTOS_OF.get(target)]
        photos = work / f"photos-{target}"  # the same files, for the board
        photos.mkdir()
        for f in files:
            shutil.copy(f, photos / f.name)
        x = np.stack([b.model_input(img) for _, img in read_images(files)])
        assert len(x) == len(files), "a photo the host cannot read"
        np.save(work / f"x-{target}.npy", x)
        runner = b.runner("int8", int(THREADS))
        return {"files": [f.name for f in files], "x": x, "int8": runner.infer(x), "runtime": runner.runtime}

    return _cached(make)


@pytest.fixture(scope="module")
def board_root(bundle):
    """target -> (the arm64 root, the python of a venv with that bundle's requirements); skips when unavailable."""
    def make(target: str):
        try:
            return arm64.prepare(arm64.requirements_of(bundle(target)))
        except arm64.Unavailable as e:
            return e

    get = _cached(make)

    def ready(target: str):
        got = get(target)
        if isinstance(got, arm64.Unavailable):
            pytest.skip(str(got))
        return got

    return ready


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if RESULTS:
        out = Path(os.environ.get("ARM_REPORT", ROOT / "runs" / "test-arm"))
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(RESULTS, indent=2))
        (out / "report.md").write_text(_markdown(RESULTS))
        print(f"\ntest-arm report: {out / 'report.md'}", file=sys.stderr)


def _board(board_root, work, target: str, cpu: str) -> tuple[arm64.Board, str]:
    root, python = board_root(target)
    return arm64.Board(root, cpu, {work: "/work"}), python


# OpenVINO 2026.4's CPU plugin does not initialise on an emulated Cortex-A72 (it also cannot read MIDR_EL1 from
# the x86 host's /sys, which it can on a76); whether a real Pi 4 runs it is not shown here.
OPENVINO_ON_A72 = "object is not initialized"


def _succeeded(out, board: arm64.Board, target: str, what: str) -> None:
    """A board command exited 0; OpenVINO failing to initialise is the known xfail, anything else fails the test."""
    if out.returncode != 0 and target == "openvino" and OPENVINO_ON_A72 in out.stderr:
        pytest.xfail(f"OpenVINO's CPU plugin did not initialise on emulated {board.cpu} ({OPENVINO_ON_A72})")
    assert out.returncode == 0, f"{what} on emulated {board.cpu} exited {out.returncode}:\n{out.stderr[-3000:]}"


def _probe(board: arm64.Board, python: str, work: Path, target: str, name: str, *args: str, **kw) -> dict:
    shutil.copy(Path(__file__).with_name("arm_probe.py"), work / "arm_probe.py")
    argv = [python, "/work/arm_probe.py", f"/work/bundle-{target}", f"/work/{name}.npz", "--threads", THREADS, *args]
    _succeeded(board.run(argv, **kw), board, target, "the probe")
    with np.load(work / f"{name}.npz") as z:
        return {k: (json.loads(str(z[k])) if k == "info" else z[k]) for k in z.files}


def _agreement(a: np.ndarray, b: np.ndarray) -> dict:
    same = int((a.argmax(1) == b.argmax(1)).sum())
    lo, hi = wilson(same, len(a))
    return {"agree": same, "of": len(a), "rate": round(same / len(a), 4), "interval95": [round(lo, 4), round(hi, 4)]}


@pytest.mark.parametrize("target,cpu", CASES)
def test_int8_decisions_match_the_host(target, cpu, board_root, work, host):
    board, python = _board(board_root, work, target, cpu)
    host = host(target)
    out = _probe(board, python, work, target, f"probe-{target}-{cpu}", "--tensors", f"/work/x-{target}.npy",
                 "--images", f"/work/photos-{target}")
    on_host_x, files = out["int8_on_host_tensors"], host["files"]
    differ = [f for f, a, b in zip(files, on_host_x.argmax(1), host["int8"].argmax(1)) if a != b]
    same_tensor = np.all(out["board_tensors"].reshape(len(files), -1) == host["x"].reshape(len(files), -1), axis=1)
    result = RESULTS.setdefault(f"{target} {cpu}", {})
    result |= {
        "target": target, "cpu": cpu, "board": CPUS[cpu][0], "isa": out["info"]["isa"], "runtime": out["info"]["int8"],
        "host_runtime": host["runtime"], "executed_precisions": out["info"].get("int8_precisions"),
        "images": len(files),
        "identical_tensors": {"bit_identical_logits": int(np.all(on_host_x == host["int8"], axis=1).sum()),
                              "max_abs_logit_diff": float(np.abs(on_host_x - host["int8"]).max()),
                              **_agreement(on_host_x, host["int8"])},
        "real_path": {"tensors_identical_to_host": int(same_tensor.sum()),
                      "max_abs_tensor_diff": float(np.abs(out["board_tensors"] - host["x"]).max()),
                      **_agreement(out["int8_on_board_tensors"], host["int8"])},
    }
    assert out["info"]["isa"] == CPUS[cpu][1], out["info"]
    if target == "openvino":  # partly float on Arm: not the host's arithmetic, so a floor, not identity
        assert len(differ) <= 0.1 * len(files), f"OpenVINO on emulated {cpu} differs from the host on {differ}"
        return
    assert not differ, (f"emulated {cpu} decided differently from the host on identical input tensors "
                        f"(Arm int8 arithmetic, not decoding): {differ}")
    board_on_same = out["int8_on_board_tensors"][same_tensor].argmax(1)
    assert np.array_equal(board_on_same, host["int8"][same_tensor].argmax(1))
    if target in ("rpi", "tflite"):
        assert "XNNPACK;" in out["info"]["int8"], out["info"]


def _run_sh(board: arm64.Board, python: str, target: str, *args: str) -> None:
    _succeeded(board.run(["/usr/bin/env", f"PYTHON={python}", f"/work/bundle-{target}/run.sh", *args]), board, target,
               f"./run.sh {args[0]}")


@pytest.mark.parametrize("target,cpu", CASES)
def test_validate_on_the_board(target, cpu, board_root, work):
    board, python = _board(board_root, work, target, cpu)
    dest = f"validation-{target}-{cpu}"
    _run_sh(board, python, target, "validate", "--data", "/work/data", "--out", f"/work/{dest}", "--runs", "2", "--warmup", "1",
            "--threads", THREADS)
    r = json.loads((work / dest / "report.json").read_text())
    RESULTS.setdefault(f"{target} {cpu}", {})["validate"] = {"int8_isa": r["int8_isa"], "runtime": r["runtime"],
                                               "accuracy": {k: r["accuracy"][k] for k in ("float", "int8", "images")},
                                               "host_int8_top1": r["host"]["accuracy"]["int8"]["top1"]}
    assert r["accuracy"]["images"] == 3 and r["int8_isa"]["board"] == CPUS[cpu][1]
    if target == "rpi":
        assert "XNNPACK;" in r["runtime"]["int8"] and ("asimddp" in r["runtime"]["int8"]) == (cpu == "cortex-a76")


def _decisions(jsonl: Path) -> dict[int, int]:
    return {r["frame"]: r["index"] for r in map(json.loads, jsonl.read_text().splitlines())}


@pytest.fixture(scope="module")
def host_camera(work, bundle):
    def make(target: str) -> dict[int, int]:
        out = work / f"camera-{target}-host.jsonl"
        subprocess.run([str(bundle(target) / "run.sh"), "--source", str(work / "clip.avi"), "--headless", "--json", str(out),
                        "--stats-every", "0", "--threads", THREADS], check=True, env={**os.environ, "PYTHON": sys.executable})
        return _decisions(out)

    return _cached(make)


@pytest.mark.parametrize("target,cpu", CASES)
def test_camera_program_on_a_video(target, cpu, board_root, work, host_camera):
    board, python = _board(board_root, work, target, cpu)
    host_camera = host_camera(target)
    _run_sh(board, python, target, "--source", "/work/clip.avi", "--headless", "--json", f"/work/camera-{target}-{cpu}.jsonl",
            "--stats-every", "0", "--threads", THREADS)
    on_board = _decisions(work / f"camera-{target}-{cpu}.jsonl")
    assert sorted(on_board) == sorted(host_camera) == list(range(12)), "every frame of the file, classified once"
    same = sum(on_board[i] == host_camera[i] for i in host_camera)
    RESULTS.setdefault(f"{target} {cpu}", {})["camera"] = {"frames": len(host_camera), "agree_with_host": same}
    # The board's OpenCV decodes the MJPEG itself: a close call may flip, most may not.
    assert same >= 0.75 * len(host_camera), f"emulated {cpu}'s camera program agreed with the host on {same}/12 frames"


def test_label_says_when_xnnpack_did_not_run(board_root, work, host):
    """Without /sys, LiteRT cannot read the CPU and skips XNNPACK without a word: the label must say so."""
    if "rpi" not in TARGETS:
        pytest.skip("ARM_TARGETS has no rpi")
    board, python = _board(board_root, work, "rpi", "cortex-a72")
    host = host("rpi")
    np.save(work / "x4.npy", host["x"][:4])
    out = _probe(board, python, work, "rpi", "probe-nosys", "--tensors", "/work/x4.npy", sys_fs=False)
    RESULTS["without_sys"] = {"runtime": out["info"]["int8"], **_agreement(out["int8_on_host_tensors"], host["int8"][:4])}
    assert "built-in kernels, XNNPACK not applied" in out["info"]["int8"], out["info"]


def _markdown(results: dict) -> str:
    lines = [f"# {MODEL} bundles on emulated Arm (QEMU {'.'.join(map(str, arm64.qemu_version() or ()))}) vs this host",
             "", "Timings under emulation mean nothing; only decisions are compared.", "",
             "| target | CPU | int8 ISA | runtime | identical tensors: same top-1 | bit-identical logits | real path (board decodes): same top-1 | camera frames same |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results.values():
        if "identical_tensors" not in r:
            continue
        it, rp, cam = r["identical_tensors"], r["real_path"], r.get("camera", {})
        lines.append(f"| {r['target']} | {r['cpu']} ({r['board']}) | {r['isa']} | {r['runtime']} | {it['agree']}/{it['of']} | "
                     f"{it['bit_identical_logits']}/{it['of']} (max diff {it['max_abs_logit_diff']:.3g}) | "
                     f"{rp['agree']}/{rp['of']} ({rp['interval95'][0]:.3f}-{rp['interval95'][1]:.3f}); tensors identical on "
                     f"{rp['tensors_identical_to_host']} | {cam.get('agree_with_host', '?')}/{cam.get('frames', '?')} |")
    hosts = sorted({f"{r['target']}: {r['host_runtime']}" for r in results.values() if "host_runtime" in r})
    lines += ["", f"Host: {'; '.join(hosts)}."]
    for r in results.values():
        if r.get("executed_precisions"):
            lines.append(f"{r['target']} on {r['cpu']}: int8 IR's compute layers ran as {r['executed_precisions']}.")
    for key, r in results.items():
        if "validate" in r:
            acc = r["validate"]["accuracy"]
            lines.append(f"`./run.sh validate` ({key}), {acc['images']} labelled photos: top-1 float {acc['float']['top1']:.3f}, "
                         f"int8 {acc['int8']['top1']:.3f} (the host's: {r['validate']['host_int8_top1']:.3f}); "
                         f"int8 made for {r['validate']['int8_isa']['made_for']}, board {r['validate']['int8_isa']['board']}.")
    if "without_sys" in results:
        lines.append(f"Without /sys (a bare chroot): {results['without_sys']['runtime']}.")
    return "\n".join(lines) + "\n"

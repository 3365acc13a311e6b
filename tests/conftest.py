"""Shared fixtures: tiny models that have learnt something, and image folders the tests write."""
from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

# OpenVINO's and NNCF's usage telemetry fork a process per event (from a multithreaded process,
# which JAX warns can deadlock); both stand down in CI, which this is.
os.environ.setdefault("CI", "true")

import cv2
import numpy as np
import pytest
import torch

from pipeline.model.family import get_spec
from pipeline.model.load import build, reestimate_batchnorm, save_checkpoint

# make test-isa: the int8 tests (marked int8) run their int8 models on this QEMU CPU model (Haswell: AVX2, no VNNI;
# Nehalem: SSE4.2) while the rest of the test (PyTorch, NNCF, the quantizers) runs natively at full speed.
TEST_CPU = os.environ.get("EFFNET_TEST_CPU") or None

TINY_SIZE = 64  # input resolution of the tiny test models
CLASSES = ["red", "green", "blue", "yellow"]
_BGR = {"red": (30, 30, 220), "green": (40, 200, 40), "blue": (220, 60, 30), "yellow": (30, 220, 230)}


def make_image(cls: str, rng: np.random.Generator, size: int = 80) -> np.ndarray:
    """A noisy image whose dominant colour is its class, with a random grey shape on it."""
    img = np.clip(rng.normal(0, 40, (size, size, 3)) + np.array(_BGR[cls]), 0, 255).astype(np.uint8)
    x, y = rng.integers(0, size - 20, 2)
    cv2.rectangle(img, (int(x), int(y)), (int(x) + 20, int(y) + 15), (128, 128, 128), -1)
    return img


def write_folder(root: Path, per_class: int, seed: int = 0, names=None) -> Path:
    """An ImageFolder of the colour classes; `names` renames the class folders."""
    rng = np.random.default_rng(seed)
    names = names or CLASSES
    for cls, folder in zip(CLASSES, names):
        d = root / folder
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            cv2.imwrite(str(d / f"{cls}_{i}.png"), make_image(cls, rng))
    return root


def _train_tiny(model_name: str, steps: int = 100) -> tuple[torch.nn.Module, list[str]]:
    spec = get_spec(model_name)
    pre = spec.preprocess.at_size(TINY_SIZE)
    torch.manual_seed(0)
    model = build(spec, len(CLASSES))
    rng = np.random.default_rng(1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        labels = rng.integers(0, len(CLASSES), 16)
        x = torch.from_numpy(np.stack([pre(make_image(CLASSES[c], rng)) for c in labels]))
        loss = torch.nn.functional.cross_entropy(model(x), torch.from_numpy(labels))
        opt.zero_grad()
        loss.backward()
        opt.step()
    # Running statistics lag a fast-moving model; re-estimate them on fresh images.
    fresh = [np.stack([pre(make_image(CLASSES[c], rng)) for c in rng.integers(0, len(CLASSES), 32)]) for _ in range(2)]
    reestimate_batchnorm(model, fresh)
    model.eval()
    labels = rng.integers(0, len(CLASSES), 32)
    with torch.no_grad():
        logits = model(torch.from_numpy(np.stack([pre(make_image(CLASSES[c], rng)) for c in labels])))
    # the tests below compare int8 with float on it: a model that learnt nothing would make that meaningless
    assert (logits.argmax(1).numpy() == labels).mean() >= 0.9, "the tiny model did not learn the colours"
    return model, list(CLASSES)


def write_tiny_checkpoint(model_name: str, folder: Path) -> Path:
    """A checkpoint of `model_name` (4 colour classes, 64 px) trained for a few steps, written by this project."""
    model, labels = _train_tiny(model_name)
    path = folder / f"{model_name}_tiny.pt"
    save_checkpoint(path, get_spec(model_name), model, labels)
    return path


def ships(report: dict) -> bool:
    """The gate let the int8 model ship: passed, or inconclusive (too few images) without STRICT."""
    return report["ships"] and report["verdict"] in ("passed", "inconclusive")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return write_tiny_checkpoint("b0", tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="session")
def colour_data(tmp_path_factory) -> Path:
    """12 validation images per colour class, class folders named by the class names."""
    return write_folder(tmp_path_factory.mktemp("data") / "val", per_class=12, seed=7)


def deploy_args(target: str, checkpoint: Path, data: Path, out: Path) -> list[str]:
    """The CLI arguments of the shared tiny deployment (deployed_tiny): a test deploying the same
    again into its folder hits every cached stage."""
    return ["deploy", "--target", target, "--model", "b0", "--weights", str(checkpoint), "--data", str(data),
            "--image-size", str(TINY_SIZE), "--calib-size", "16", "--out", str(out), "--set", "runs=5", "--set", "warmup=2",
            "--set", "quant.bias_correction=fast"]


@pytest.fixture(scope="session")
def deployed_tiny(tiny_checkpoint, colour_data, tmp_path_factory):
    """target -> the run folder of the tiny b0 deployed there once a session, for tests of what a
    deployment gives (bundle, camera program, MQTT, push), not of how it is made. Its bias correction
    is NNCF's fast one: the full one (the default, tested in test_deploy/test_onnx_targets) makes
    no difference to a bundle and costs ~10 s a deploy."""
    from pipeline.cli import main

    made: dict = {}

    def get(target: str) -> Path:
        if target not in made:
            out = tmp_path_factory.mktemp(f"deployed-{target}") / "run"
            assert main(deploy_args(target, tiny_checkpoint, colour_data, out)) == 0
            made[target] = out
        return made[target]

    return get


@pytest.fixture(scope="session")
def tiny_arrays(tiny_checkpoint) -> dict:
    """The tiny b0, a 16-image calibration batch, 48 labelled test images and the model's own logits on them."""
    from pipeline.model.load import load

    spec = get_spec("b0")
    pre = spec.preprocess.at_size(TINY_SIZE)
    model = load(spec, str(tiny_checkpoint)).model
    rng = np.random.default_rng(11)
    calib = np.stack([pre(make_image(CLASSES[i % 4], rng)) for i in range(16)])
    labels = rng.integers(0, 4, 48)
    test = np.stack([pre(make_image(CLASSES[c], rng)) for c in labels])
    with torch.no_grad():
        ref = model(torch.from_numpy(test)).numpy()
    return {"model": model, "calib": calib, "test": test, "labels": labels, "ref": ref,
            "example": torch.zeros(1, 3, TINY_SIZE, TINY_SIZE)}


@pytest.fixture(scope="session")
def target_artifacts(tiny_arrays, tmp_path_factory):
    """name -> {"fp32", "int8"}: each target's float and int8 artifacts of the tiny b0, made once a session.

    Targets sharing a converter (jetson: onnx's) or a converter and quantizer (rpi: tflite's) share
    the files those make: the same code on the same model makes the same file.
    """
    import targets
    from pipeline.config import QuantConfig

    made: dict = {}

    def get(name: str) -> dict:
        target, t = targets.get_target(name), tiny_arrays
        ok, why = target.is_available()
        if not ok:
            pytest.skip(why)
        convert, quantize = type(target).convert_float, type(target).quantize
        if convert not in made:
            made[convert] = target.convert_float(t["model"], t["example"], tmp_path_factory.mktemp(name) / "float")
        if (convert, quantize) not in made:
            out = tmp_path_factory.mktemp(name) / "int8"
            # made for the int8 ISA the tests run on (an emulated CPU's under make test-isa), as a deploy for it would be
            made[convert, quantize] = target.quantize(t["model"], made[convert], t["calib"], QuantConfig(), out, isa=int8_isa())
        return {"fp32": made[convert], "int8": made[convert, quantize]}

    return get


@pytest.fixture(scope="session")
def outlier_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny b0 with one outlier channel that per-tensor int8 cannot represent, outputs unchanged.

    Channel 5 of the last block's projection gets +1000 and conv_head's BatchNorm mean absorbs it, so
    float logits stay the same while conv_head's input range becomes ~1000 wide: int8 rounds every
    other channel of that tensor to nothing. A real failure mode (outlier channels) with a known
    culprit: features.8.0.
    """
    from pipeline.model.load import load

    spec = get_spec("b0")
    loaded = load(spec, str(tiny_checkpoint))
    model = loaded.model.eval()
    projection_bn = model.features[7][0].block[-1][1]
    head_conv, head_bn = model.features[8][0], model.features[8][1]
    with torch.no_grad():
        projection_bn.bias[5] += 1000.0
        head_bn.running_mean += 1000.0 * head_conv.weight[:, 5, 0, 0]
    path = tmp_path_factory.mktemp("outlier") / "b0_outlier.pt"
    save_checkpoint(path, spec, model, loaded.labels)
    return path


@pytest.fixture(scope="session")
def gain_outlier_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny b0 with one channel before conv_head scaled up 2000x and left unused by conv_head: an
    outlier channel for per-tensor int8 activations (the bias-shifted fixture above would overflow int16
    kernels' 32-bit bias; this one does not).

    The outlier carries no class information (conv_head's weights for it are zero), so int8's step on
    conv_head's input (~2000x the other channels' range / 255) rounds every informative channel to
    zero whatever the CPU's int8 arithmetic: PTQ fails by a wide margin, while 16x8 keeps ~30 levels
    for them and recovers. Float loses one of 320 channels and stays accurate."""
    from pipeline.model.load import load

    spec = get_spec("b0")
    loaded = load(spec, str(tiny_checkpoint))
    model = loaded.model.eval()
    projection_bn, head_conv = model.features[7][0].block[-1][1], model.features[8][0]
    with torch.no_grad():
        projection_bn.weight[5] *= 2000.0
        projection_bn.bias[5] *= 2000.0
        head_conv.weight[:, 5] = 0.0
    path = tmp_path_factory.mktemp("gain") / "b0_gain.pt"
    save_checkpoint(path, spec, model, loaded.labels)
    return path


@functools.lru_cache(maxsize=1)
def int8_isa() -> str:
    """The int8 ISA int8 tests run on: the emulated CPU's under make test-isa, else this machine's."""
    from edge.isa import detect

    if not TEST_CPU:
        return detect()
    from pipeline.emulation import x86_python

    probe = [*x86_python(TEST_CPU), "-c", "from edge.isa import detect; print(detect())"]
    return subprocess.run(probe, capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parent.parent).stdout.split()[-1]


def int8_runner(runtime: str, artifact: Path, threads: int = 1, unsaturated: bool = False):
    """`artifact` in `runtime` (edge.runners.RUNTIMES) as an int8 test runs it: on the emulated TEST_CPU under make
    test-isa (edge.runners.emulated), else natively. A target's int8 model goes by its host runtime (Target.host_runtime:
    Jetson's is tensorrt-reference where TensorRT is not)."""
    if TEST_CPU:
        from edge.runners.emulated import EmulatedRunner
        from pipeline.emulation import x86_python

        return EmulatedRunner(x86_python(TEST_CPU), TEST_CPU, runtime, artifact, threads,
                              unsaturated_int8=unsaturated)
    from edge.runners import load_runner

    return load_runner(runtime, artifact, threads, unsaturated_int8=unsaturated)


def target_int8_runner(target, artifact: Path, threads: int = 1):
    """A target's int8 artifact as its board (or host reference) runs it, on the CPU int8 tests run on."""
    return int8_runner(target.host_runtime, artifact, threads) if TEST_CPU else target.runner(artifact, threads)


def on_test_cpu(fn, *args):
    """`fn(*args)` on the CPU int8 tests run on: in a Python on the emulated TEST_CPU under make test-isa (`fn` a
    module-level function of a test module, its arguments and result picklable), else here."""
    if not TEST_CPU:
        return fn(*args)
    import pickle

    from pipeline.emulation import x86_python

    here = Path(__file__).resolve().parent
    code = ("import pickle, sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import importlib; "
            "fn = getattr(importlib.import_module(sys.argv[3]), sys.argv[4]); "
            "sys.stdout.buffer.write(pickle.dumps(fn(*pickle.loads(sys.stdin.buffer.read()))))")
    out = subprocess.run([*x86_python(TEST_CPU), "-c", code, str(here), str(here.parent),
                          fn.__module__, fn.__name__], input=pickle.dumps(args), capture_output=True)
    if out.returncode != 0:
        raise AssertionError(f"{fn.__name__} on emulated {TEST_CPU} exited {out.returncode}:\n{out.stderr.decode()[-3000:]}")
    return pickle.loads(out.stdout)

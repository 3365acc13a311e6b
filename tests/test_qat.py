"""QUANT=qat: NNCF QAT from the PTQ initialisation, exported per target, compared with PTQ in the report."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from conftest import TINY_SIZE, int8_isa, ships
from pipeline import PipelineError
from pipeline.quant import qat
from pipeline.cli import main
from pipeline.config import QuantConfig
from targets.base import trained_float_model
from pipeline.data.folders import labelled_samples
from pipeline.model.family import get_spec
from pipeline.model.load import load
from pipeline.train.command import FolderDataset

QUICK = QuantConfig(qat_epochs=1, qat_batch_size=8)


@pytest.fixture(scope="module")
def train_folder(tmp_path_factory):
    from conftest import write_folder

    return write_folder(tmp_path_factory.mktemp("qat") / "train", per_class=6, seed=3)


@pytest.fixture(scope="module")
def trained_with(tiny_checkpoint, tiny_arrays, train_folder):
    """A tiny b0 after one QAT epoch (per NNCF preset), with the folded float model it started from."""
    cache = {}

    def make(preset=None):
        if preset not in cache:
            loaded = load(get_spec("b0"), str(tiny_checkpoint))
            folded, qmodel = qat.prepare(loaded.model, tiny_arrays["calib"], QUICK, preset, int8_isa())
            before = {k: v.clone() for k, v in qmodel.state_dict().items()}
            samples = labelled_samples(train_folder, loaded.labels)
            dataset = FolderDataset(samples, get_spec("b0").preprocess.at_size(TINY_SIZE), train=True)
            history = qat.finetune(qmodel, folded, dataset, QuantConfig(qat_epochs=1, qat_batch_size=8, qat_lr=1e-4), log=lambda *_: None)
            cache[preset] = {"folded": folded, "qmodel": qmodel, "before": before, "history": history}
        return cache[preset]

    return make


@pytest.fixture(scope="module")
def trained(trained_with):
    return trained_with(None)


def test_finetune_trains_weights_and_quantizer_ranges(trained):
    after = trained["qmodel"].state_dict()
    changed = {k for k, v in trained["before"].items() if v.dtype.is_floating_point and not torch.equal(v, after[k])}
    assert any(k.endswith("weight") for k in changed)
    assert any("_scale_param_storage" in k or "input_range" in k or "input_low" in k for k in changed)  # NNCF's ranges learn too
    h = trained["history"]
    assert len(h) == 1 and np.isfinite(h[0]["loss"]) and h[0]["processes"] == 1
    assert set(h[0]) == {"epoch", "loss", "train_agreement_with_float", "lr", "processes"}  # what the report reads
    assert 0 <= h[0]["train_agreement_with_float"] <= 1 and h[0]["lr"] == pytest.approx(0, abs=1e-12)  # cosine to zero


def test_trained_float_model_carries_the_qat_weights(trained):
    tuned = trained_float_model(trained["qmodel"], trained["folded"])
    q = trained["qmodel"].state_dict()
    for k, v in tuned.state_dict().items():
        assert torch.equal(v, q[k])


# tflite (~33 s, the same requantize route as onnx) and jetson (~25 s, NNCF's Q/DQ export; Jetson's deploy and
# pixel-input artifact stay in the default run) in make test-e2e
@pytest.mark.parametrize("target_name", ["openvino", "onnx", pytest.param("jetson", marks=pytest.mark.e2e),
                                         pytest.param("tflite", marks=pytest.mark.e2e)])
def test_every_target_exports_the_qat_model_as_int8(trained_with, tiny_arrays, tmp_path, target_name):
    import targets

    target = targets.get_target(target_name)
    trained = trained_with(target.qat_preset)
    # no bias correction: the export route is under test here (onnx's requantize would spend ~15 s on it)
    path = target.export_qat(trained["qmodel"], trained["folded"], tiny_arrays["example"], tiny_arrays["calib"],
                             QuantConfig(bias_correction="off"), tmp_path / "qat", isa=int8_isa())
    info = target.describe(path)
    assert info["compute_ops_int8_input"] > 0
    if target_name == "tflite":
        assert info["full_integer"] is True
    if target_name == "jetson":
        assert info["quantize_ops"] > 0 and info["nonzero_zero_points"] == 0  # TensorRT's symmetric Q/DQ
        assert info["per_channel_activation_quantizers"] == 0  # TensorRT: one scale per activation tensor
    with torch.no_grad():
        ref = trained["qmodel"](torch.from_numpy(tiny_arrays["test"])).numpy()
    runner = target.runner(path, precision="f32")
    got = np.concatenate([runner.infer(tiny_arrays["test"][i : i + 1]) for i in range(len(tiny_arrays["test"]))])
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.9
    assert (got.argmax(1) == tiny_arrays["labels"]).mean() >= 0.85


@pytest.mark.e2e  # ~50 s; make test-e2e runs every QAT deploy (the default run: QAT fine-tuning and every export)
def test_qat_deploy_reports_float_ptq_and_qat(tiny_checkpoint, colour_data, train_folder, tmp_path):
    args = ["deploy", "--model", "b0", "--weights", str(tiny_checkpoint), "--data", str(colour_data),
            "--train-data", str(train_folder), "--quant", "qat", "--image-size", "64", "--calib-size", "16",
            "--out", str(tmp_path / "run"), "--set", "runs=5", "--set", "warmup=2", "--set", "quant.qat_epochs=2"]
    assert main(args) == 0
    run = tmp_path / "run"
    report = json.loads((run / "report.json").read_text())
    assert ships(report) and report["quant"] == "int8-qat" and report["artifact"].endswith("qat/model.xml")
    assert report["ptq"]["artifact"].endswith("int8/model.xml")
    assert report["accuracy"]["int8"]["top1"] >= 0.85 and report["ptq"]["accuracy"]["top1"] >= 0.85
    assert report["latency_ms"]["p50"] > 0 and report["ptq"]["latency_ms"]["p50"] > 0
    q = report["qat"]
    assert [h["epoch"] for h in q["history"]] == [1, 2] and q["train_images"] == 24
    assert q["train_folder"] == str(train_folder) and q["trained_on_validation_data"] is False
    md = (run / "report.md").read_text()
    assert "| float (PyTorch)" in md and "| int8 PTQ" in md and "**int8 QAT**" in md and "## Quantization-aware training" in md
    assert (run / "bundle" / "model" / "int8.xml").exists()
    # the bundle ships the QAT model, not the PTQ one
    assert (run / "bundle" / "model" / "int8.xml").read_bytes() == (run / "qat" / "model.xml").read_bytes()


@pytest.mark.e2e  # ~45 s; QAT's training and every target's QAT export stay in the default run
def test_qat_without_train_data_never_trains_on_its_validation_images(tiny_checkpoint, colour_data, tmp_path):
    """No TRAIN_DATA: QAT trains on half of each class of DATA, and float, PTQ and QAT are all validated on the other half."""
    args = ["deploy", "--model", "b0", "--weights", str(tiny_checkpoint), "--data", str(colour_data), "--quant", "qat",
            "--image-size", "64", "--calib-size", "16", "--out", str(tmp_path / "run"), "--set", "quant.qat_epochs=1",
            "--set", "runs=3", "--set", "warmup=1"]
    assert main(args) == 0
    run = tmp_path / "run"
    trained = set(json.loads((run / "qat" / "train_files.json").read_text()))
    validated = set(json.loads((run / "validate" / "files.json").read_text()))
    assert len(trained) == len(validated) == 24 and not trained & validated  # 48 images, 12 per class, halved
    report = json.loads((run / "report.json").read_text())
    assert report["qat"]["train_split"] is True and report["qat"]["trained_on_validation_data"] is False
    assert report["accuracy"]["images"] == 24 and "which QAT never saw" in (run / "report.md").read_text()


@pytest.mark.e2e  # ~50 s; the same deploy path as the default QAT run
def test_label_free_qat_distils_on_calibration_images_it_never_validates(tiny_checkpoint, colour_data, tmp_path):
    """quant.qat_data=calibration: no labels, no TRAIN_DATA; calibration (drawn from DATA) is what QAT trains on, by
    distillation alone, and validation leaves those images out."""
    args = ["deploy", "--model", "b0", "--weights", str(tiny_checkpoint), "--data", str(colour_data), "--quant", "qat",
            "--image-size", "64", "--calib-size", "16", "--out", str(tmp_path / "run"), "--set", "quant.qat_epochs=1",
            "--set", "quant.qat_data=calibration", "--set", "runs=3", "--set", "warmup=1"]
    assert main(args) == 0
    run = tmp_path / "run"
    trained = set(json.loads((run / "qat" / "train_files.json").read_text()))
    assert trained == set(json.loads((run / "calibration" / "files.json").read_text())) and len(trained) == 16
    validated = set(json.loads((run / "validate" / "files.json").read_text()))
    assert len(validated) == 48 - 16 and not trained & validated
    q = json.loads((run / "report.json").read_text())["qat"]
    assert q["labels"] is False and q["validation_images_trained_on"] == 0 and q["train_split"] is False
    assert q["history"][0]["loss"] > 0  # KL alone (cross-entropy over no labels would be NaN)
    assert "distillation from the float model alone" in (run / "report.md").read_text()


def test_label_free_qat_refuses_random_calibration(tiny_checkpoint, colour_data, tmp_path, capsys):
    args = ["deploy", "--model", "b0", "--weights", str(tiny_checkpoint), "--data", str(colour_data), "--quant", "qat",
            "--image-size", "64", "--calib", "random", "--calib-size", "4", "--out", str(tmp_path / "run"),
            "--set", "quant.qat_data=calibration"]
    assert main(args) == 1
    assert "pass CALIB=<a folder of real images>" in capsys.readouterr().err


def test_missing_compiler_is_one_clear_line(monkeypatch):
    monkeypatch.setattr(qat.shutil, "which", lambda _: None)
    with pytest.raises(PipelineError, match="apt install g\\+\\+"):
        qat.check_toolchain(log=lambda *_: None)


def test_missing_ninja_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ninja", None)  # what an install without ninja looks like to `import ninja`
    with pytest.raises(PipelineError, match="pip install ninja"):
        qat.check_toolchain(log=lambda *_: None)


def test_toolchain_builds_the_real_extension():
    from nncf.torch.quantization.extensions import QuantizedFunctionsCPU
    from nncf.torch.quantization.reference import ReferenceQuantizedFunctions

    qat.check_toolchain(log=lambda *_: None)
    assert QuantizedFunctionsCPU._loaded_namespace is not ReferenceQuantizedFunctions


@pytest.mark.e2e  # ~70 s; torchrun's training path is also covered by test_train's two-rank run
def test_torchrun_two_ranks_run_qat_and_rank0_alone_writes(tiny_checkpoint, colour_data, train_folder, tmp_path):
    """`torchrun --nproc_per_node=2 -m pipeline deploy --quant qat`: both ranks train (gloo), one report."""
    import os
    import subprocess
    from pathlib import Path

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "pipeline", "deploy",
           "--model", "b0", "--weights", str(tiny_checkpoint), "--data", str(colour_data), "--train-data", str(train_folder),
           "--quant", "qat", "--image-size", "64", "--calib-size", "16", "--out", str(out), "--set", "runs=5",
           "--set", "quant.qat_epochs=1", "--set", "quant.qat_batch_size=4"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert r.stdout.count("[qat] epoch 1/1") == 1 and r.stdout.count("[report]") == 1  # rank 0 alone logs
    report = json.loads((out / "report.json").read_text())
    assert ships(report) and [h["processes"] for h in report["qat"]["history"]] == [2]
    assert not list(out.glob(".tmp-*"))

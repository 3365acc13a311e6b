"""One figure per fact: the agreement figures read the same in report.json, report.md, the bundle's README and
config.json and the console; a label-free floor fails an int8 model that does not compute the float model."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import TINY_SIZE, deploy_args, write_folder
from edge import metrics
from edge.report import CALIBRATION_SET, agreement_phrase, pct
from pipeline.cli import main
from pipeline.config import make_config
from pipeline.ship.report import gate


def test_each_agreement_figure_is_the_same_in_every_place(tiny_checkpoint, colour_data, deployed_tiny, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(deployed_tiny("openvino"), run)  # the session's tiny deployment: every stage cached
    capsys.readouterr()
    assert main(deploy_args("openvino", tiny_checkpoint, colour_data, run)) == 0
    console = capsys.readouterr().out
    report = json.loads((run / "report.json").read_text())
    fid, acc = report["fidelity"], report["accuracy"]
    assert fid["agreement"] == acc["top1_agreement"] and fid["agreement_images"] == acc["images"] == 48
    assert fid["calibration_agreement"] is None  # CALIB is DATA here: no calibration image outside validation
    phrase = agreement_phrase(fid)
    assert phrase == f"top-1 agreement with float {pct(fid['agreement'])} on the 48 validation images"
    md = (run / "report.md").read_text()
    assert f"| top-1 agreement with float on the validation images | {pct(fid['agreement'])} |" in md
    int8_row = next(line for line in md.splitlines() if line.startswith("| **int8**"))
    assert f"| {pct(acc['top1_agreement'])} |" in int8_row  # the results table: the validation figure
    readme = (run / "bundle" / "README.md").read_text()
    config = json.loads((run / "bundle" / "config.json").read_text())
    assert phrase in readme and phrase in console and agreement_phrase(config["host"]["fidelity"]) == phrase
    assert md.count("top-1 agreement with float on the") == 1 and CALIBRATION_SET not in md


def _validation(logits_float: np.ndarray, logits_int8: np.ndarray, labels: np.ndarray, calibration_agree: int, calibration: int) -> dict:
    """What the validate stage hands the gate, from logits (the keys gate() reads)."""
    return {"paired": metrics.paired_counts(logits_float, logits_int8, labels), "agree": metrics.agreeing(logits_float, logits_int8),
            "images": len(labels), "agreement_unlabelled": {"images": calibration, "agree": calibration_agree},
            "float_parity": {"relative_diff": 0.0}, "camera_input": None, "accuracy": {"top1_agreement": 0.0}}


OPS = {"compute_ops_int8_input": 50, "float_compute_ops": []}


@pytest.mark.parametrize("shuffle", ["rotated", "random"])
def test_the_gate_fails_an_int8_model_that_does_not_follow_float(shuffle):
    """Rotated outputs (int8's class k is float's k+1) or a random model: agreement 0, on the labelled images and on
    the unlabelled calibration images, each a failure of its own."""
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 2])
    float_logits = np.eye(4)[labels] * 5
    int8 = np.roll(float_logits, 1, axis=1) if shuffle == "rotated" else rng.normal(size=(3, 4)) * 1e-13
    cfg = make_config("openvino", {})
    judged = gate(cfg, _validation(float_logits, int8, labels, 0, 13), OPS)
    floor_failures = [f for f in judged["failures"] if "agreement_floor=0.7" in f]
    assert judged["verdict"] == "failed" and len(floor_failures) == 2  # 0 of 3 validation (0-56 %), 0 of 13 calibration
    assert "of the 13 calibration images" in floor_failures[1]
    assert judged["fidelity"]["calibration_agreement"]["ci95"][1] < 0.7
    off = gate(make_config("openvino", {"agreement_floor": "0"}), _validation(float_logits, int8, labels, 0, 13), OPS)
    assert not [f for f in off["failures"] if "agreement_floor" in f]
    fine = gate(cfg, _validation(float_logits, float_logits, labels, 12, 13), OPS)
    assert fine["verdict"] == "inconclusive" and not fine["failures"]  # 3 images cannot settle MAX_DROP


def test_random_weights_fail_the_gate_in_one_line(tmp_path, capsys):
    """WEIGHTS=random: an untrained model's int8 does not follow its float (near-ties everywhere)."""
    data = write_folder(tmp_path / "val", per_class=10, names=[f"class_{i}" for i in range(4)])
    out = tmp_path / "run"
    args = ["deploy", "--model", "b0", "--weights", "random", "--num-classes", "4", "--data", str(data),
            "--image-size", str(TINY_SIZE), "--calib-size", "16", "--out", str(out), "--set", "runs=3", "--set", "warmup=1",
            "--set", "quant.bias_correction=fast"]
    capsys.readouterr()
    assert main(args) == 3
    report = json.loads((out / "report.json").read_text())
    floor = [f for f in report["failures"] if "agreement_floor" in f]
    assert report["verdict"] == "failed" and floor and not (out / "bundle").exists()
    assert "wholly below agreement_floor=0.7" in (out / "report.md").read_text()


def test_report_lines_read_as_words_not_python():
    from pipeline.ship.report import _precisions
    from targets.tflite import torch_path

    assert _precisions({"u8": 49, "f32": 1}) == "50 compute layers: 49 in u8, 1 in f32"
    raw = ("targets.tflite._nhwc_model.<locals>.NHWC/timm.models.efficientnet.EfficientNet_inner/torch.nn.modules.container."
           "Sequential_blocks/torch.nn.modules.container.Sequential_5/timm.models._efficientnet_blocks.InvertedResidual_2/"
           "torch.nn.modules.conv.Conv2d_conv_dw;1")
    assert torch_path(raw) == "blocks.5.2.conv_dw" and torch_path("serving_default_args_0:0") == "serving_default_args_0:0"


def test_an_unreachable_hub_is_one_line_before_the_run_folder(tmp_path, monkeypatch, capsys):
    """B1's weights come from the PyTorch hub, which this machine cannot reach: one line naming make weights, and
    no run folder (the download is tried while inputs are checked)."""
    from pipeline.model import weights
    from pipeline.model.family import get_spec

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty cache
    hub = weights.hub_file(get_spec("b1"))
    out = tmp_path / "run"
    code = main(["deploy", "--target", "jetson", "--model", "b1", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    if code == 0:
        pytest.skip("the PyTorch hub is reachable here")
    assert code == 1 and "\n" not in err and "make weights MODEL=b1 FROM=" in err and hub.url in err
    assert not out.exists() and not hub.path.exists()


def test_make_weights_checks_the_published_hash(tmp_path, monkeypatch, capsys):
    from pipeline.model import weights
    from pipeline.model.family import get_spec

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = weights.hub_file(get_spec("b0"))
    wrong = tmp_path / "download.pth"
    wrong.write_bytes(b"not the weights")
    assert main(["weights", "--model", "b0", "--from", str(wrong)]) == 1
    err = capsys.readouterr().err
    assert f"the published file's {hub.sha256_prefix}" in err and not hub.path.exists()
    assert main(["weights", "--model", "b0", "--from", str(tmp_path / "missing.pth")]) == 1
    assert "no such file" in capsys.readouterr().err
    assert main(["weights", "--model", "lite0"]) == 0 and "need no download" in capsys.readouterr().out

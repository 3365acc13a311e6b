"""`python -m pipeline deploy` end to end on a tiny trained model, through the real CLI entry point."""
from __future__ import annotations

import functools
import json
import shutil

import pytest

from conftest import ships
from pipeline.cli import main
from pipeline.stages import STAGES

REQUIRED = [
    "model", "target", "quant", "artifact", "accuracy.float.top1", "accuracy.float.top5", "accuracy.int8.top1",
    "accuracy.int8.top5", "accuracy.top1_agreement", "accuracy.images", "accuracy.skipped", "latency_ms.p50",
    "latency_ms.p90", "latency_ms.p99", "throughput_fps", "size_mb.float", "size_mb.int8", "calibration", "passed",
    "verdict", "fidelity.drop_points", "fidelity.drop_ci95_points", "fidelity.agreement", "fidelity.agreement_ci95",
]


def _get(d, dotted):
    for part in dotted.split("."):
        d = d[part]
    return d


@pytest.fixture
def deploy_args(tiny_checkpoint, colour_data, tmp_path):
    """Deploy arguments for the tiny b0. `full_bias_correction`: the default; the tests of other behaviour
    take NNCF's fast one, ~8 s less a deploy (the full one's effect is tested in test_onnx_targets.py)."""
    def args(*extra, out="run", full_bias_correction=False):
        return [
            "deploy", "--model", "b0", "--weights", str(tiny_checkpoint), "--data", str(colour_data),
            "--image-size", "64", "--calib-size", "16", "--out", str(tmp_path / out),
            "--set", "runs=5", "--set", "warmup=2", *extra,
            *([] if full_bias_correction else ["--set", "quant.bias_correction=fast"]),
        ]

    return args


def _stage_lines(out: str) -> dict:
    lines = {}
    for line in out.splitlines():
        if line.startswith("[") and "]" in line:
            name, _, rest = line[1:].partition("] ")
            lines.setdefault(name, []).append(rest)
    return lines


def test_deploy_reports_and_caches(deploy_args, tmp_path, colour_data, capsys):
    default = functools.partial(deploy_args, full_bias_correction=True)  # every setting at its default
    assert main(default()) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    for key in REQUIRED:
        _get(report, key)
    assert ships(report) and report["model"] == "b0" and report["target"] == "openvino"
    assert report["quant"] == "int8-ptq" and report["artifact"].endswith("int8/model.xml")
    acc = report["accuracy"]
    assert acc["images"] == 48 and acc["skipped"] == 0
    assert acc["float"]["top1"] >= 0.9  # the tiny model has learnt the colours
    assert acc["int8"]["top1"] >= 0.85 and acc["top1_agreement"] >= 0.85
    assert all(0 <= _get(report, k) <= 1 for k in ["accuracy.float.top1", "accuracy.int8.top5", "accuracy.top1_agreement"])
    assert report["calibration"]["count"] == 16 and report["calibration"]["source"] == str(colour_data)
    assert report["calibration"]["random"] is False
    lat = report["latency_ms"]
    assert lat["runs"] == 5 and 0 < lat["p50"] < 5000  # the runs setting is honoured; a tiny model takes milliseconds
    # int8 weights (b0 keeps its squeeze-excite weights in float, so not a full 4x)
    assert report["size_mb"]["int8"] < report["size_mb"]["float"] / 2
    assert report["float_parity"]["relative_diff"] < 1e-3
    md = (tmp_path / "run" / "report.md").read_text()
    assert report["verdict"].upper() in md and "int8" in md and (tmp_path / "run" / "latency.png").stat().st_size > 1000

    # Unchanged re-run: every stage is skipped.
    capsys.readouterr()
    assert main(default()) == 0
    lines = _stage_lines(capsys.readouterr().out)
    for stage in ("model", "calibration", "float", "int8", "validate"):
        assert lines[stage] == ["unchanged, skipped"], (stage, lines)

    # A looser gate changes only the report.
    assert main(default("--max-drop", "5")) == 0
    lines = _stage_lines(capsys.readouterr().out)
    assert lines["validate"] == ["unchanged, skipped"]

    # A new calibration set redoes what depends on it, and only that (with NNCF's fast bias correction, which is
    # int8's setting too: ~8 s less, and the stages it redoes are the same).
    assert main(deploy_args("--calib-size", "8")) == 0
    lines = _stage_lines(capsys.readouterr().out)
    assert lines["model"] == ["unchanged, skipped"] and lines["float"] == ["unchanged, skipped"]
    for stage in ("calibration", "int8", "validate"):
        assert lines[stage][0] == "running", (stage, lines)
    assert json.loads((tmp_path / "run" / "report.json").read_text())["calibration"]["count"] == 8


# onnx: ~35 s, its conversion is in the target contract test; jetson keeps the deploy path in the default run
@pytest.mark.parametrize("target", [pytest.param("onnx", marks=pytest.mark.e2e), "jetson"])
def test_deploy_onnx_targets(deploy_args, tmp_path, target):
    assert main(deploy_args("--target", target)) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert ships(report) and report["target"] == target and report["artifact"].endswith("int8/model.onnx")
    assert report["accuracy"]["top1_agreement"] >= 0.85 and report["accuracy"]["int8"]["top1"] >= 0.85
    assert report["float_parity"]["relative_diff"] < 1e-3
    assert report["int8_ops"]["batchnorm_ops"] == 0 and report["int8_ops"]["int8_macs_share"] > 0.97
    assert report["runtime"]["int8"].startswith("onnxruntime")
    if target == "jetson":
        assert report["int8_ops"]["nonzero_zero_points"] == 0 == report["int8_ops"]["uint8_quantizers"]
        assert "TensorRT engine not built on this host" in (tmp_path / "run" / "report.md").read_text()


def test_gate_failure_exits_non_zero_and_keeps_artifacts_and_random_calibration_is_said_in_bold(deploy_args, tmp_path, capsys):
    # int8 would have to beat float by 200 points: the gate must fail. (One deploy checks both behaviours.)
    assert main(deploy_args("--max-drop", "-200", "--calib", "random")) == 3
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["verdict"] == "failed" and report["passed"] is False and "MAX_DROP=-200" in report["failures"][0]
    md = (tmp_path / "run" / "report.md").read_text()
    assert "FAILED" in md
    assert (tmp_path / "run" / "int8" / "model.xml").exists() and (tmp_path / "run" / "int8" / "model.bin").exists()
    assert "FAILED" in capsys.readouterr().out
    assert report["calibration"]["random"] is True and report["calibration"]["source"] == "random"
    assert "**WARNING: calibrated on RANDOM data" in md


def test_validation_counts_corrupt_images_and_classifies_the_rest(colour_data, tmp_path):
    """What validation does with unreadable files (the deploy below does it end to end, in make test-e2e)."""
    import numpy as np

    from edge.dataset import ClassTable, labelled_samples
    from edge.evaluate import classify
    from pipeline.model.family import get_spec

    data = tmp_path / "data"
    shutil.copytree(colour_data, data)
    (data / "red" / "truncated.png").write_bytes((data / "red" / "red_0.png").read_bytes()[:40])
    (data / "blue" / "empty.jpg").write_bytes(b"")
    samples = labelled_samples(data, ClassTable.plain(sorted(p.name for p in data.iterdir())))
    out = classify(samples, get_spec("b0").preprocess.at_size(32), {"mean colour": lambda x: x.mean(axis=(2, 3))})
    assert len(samples) == 50 and sorted(out["skipped"]) == [str(data / "blue" / "empty.jpg"), str(data / "red" / "truncated.png")]
    assert out["logits"]["mean colour"].shape == (48, 3) and len(out["labels"]) == 48 and np.isfinite(out["logits"]["mean colour"]).all()


@pytest.mark.e2e  # ~21 s of deploying; validation's skipping is the test above, calibration's in test_calibration.py
def test_corrupt_images_are_counted_not_fatal(deploy_args, colour_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(colour_data, data)
    (data / "red" / "truncated.png").write_bytes((data / "red" / "red_0.png").read_bytes()[:40])
    (data / "blue" / "empty.jpg").write_bytes(b"")
    args = deploy_args()
    args[args.index("--data") + 1] = str(data)
    assert main(args) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["accuracy"]["skipped"] == 2 and report["accuracy"]["images"] == 48
    assert len(report["accuracy"]["skipped_files"]) == 2


def test_bad_input_is_one_line_and_keeps_earlier_artifacts(deploy_args, deployed_tiny, tmp_path, capsys):
    # a copy of the session's tiny OpenVINO deployment (these settings, another folder): ~20 s less than deploying again
    shutil.copytree(deployed_tiny("openvino"), tmp_path / "run")
    before = (tmp_path / "run" / "report.json").read_text()
    capsys.readouterr()
    cases = [
        (["--data", str(tmp_path / "missing")], "DATA folder"),
        (["--weights", str(tmp_path / "nope.pth")], "does not exist"),
        (["--model", "b9"], "valid models"),
        (["--target", "coral"], "valid targets: jetson, onnx, openvino, rpi, tflite"),
        (["--calib", str(tmp_path / "missing")], "CALIB folder"),
    ]
    for extra, message in cases:
        args = deploy_args()
        for flag, value in zip(extra[::2], extra[1::2]):
            if flag in args:
                args[args.index(flag) + 1] = value
            else:
                args += [flag, value]
        assert main(args) == 1, extra
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err and "Traceback" not in err, err
    assert (tmp_path / "run" / "report.json").read_text() == before
    assert (tmp_path / "run" / "int8" / "model.xml").exists()


def test_missing_runtime_names_the_package(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['openvino'] = None; from pipeline.cli import main; "
        f"sys.exit(main(['float', '--weights', 'random', '--num-classes', '3', '--image-size', '32', '--out', r'{tmp_path}']))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 1
    err = r.stderr.strip().splitlines()
    assert err[-1].startswith("error: ") and "pip install openvino" in err[-1] and "Traceback" not in r.stderr


def test_one_stage_alone(deploy_args, deployed_tiny, tmp_path):
    # a copy of the session's tiny OpenVINO deployment (these settings) without the int8 stage and what follows it
    run = tmp_path / "run"
    shutil.copytree(deployed_tiny("openvino"), run)
    for later in ("int8", "validate", "bundle"):
        shutil.rmtree(run / later)
    (run / "report.json").unlink()
    args = deploy_args()
    args[0] = "int8"
    assert main(args) == 0
    assert (run / "int8" / "model.xml").exists() and (run / "calibration" / "calibration.npy").exists()
    assert not (run / "validate").exists() and not (run / "report.json").exists()


@pytest.mark.parametrize("command", ["deploy", *STAGES, "models", "targets", "weights"])
def test_help_everywhere(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0 and "usage" in capsys.readouterr().out


@pytest.mark.e2e  # ~35 s; the verdict rules themselves are unit-tested in test_report.py and edge/metrics' tests
def test_verdict_passed_inconclusive_strict(deploy_args, tmp_path, capsys):
    """48 images resolve a 30-point MAX_DROP (passed) but not a 1-point one (inconclusive: exit 0, bundle
    marked unverified); --strict turns inconclusive into exit 3 with no new bundle."""
    assert main(deploy_args("--max-drop", "30")) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    fid = report["fidelity"]
    assert report["verdict"] == "passed" and report["passed"] and fid["drop_ci95_points"][1] <= 30
    assert fid["paired"]["both_right"] + fid["paired"]["float_only"] + fid["paired"]["int8_only"] + fid["paired"]["both_wrong"] == 48
    assert json.loads((tmp_path / "run" / "bundle" / "config.json").read_text())["verified"] is True

    assert main(deploy_args("--max-drop", "1", out="small")) == 0
    report = json.loads((tmp_path / "small" / "report.json").read_text())
    fid = report["fidelity"]
    assert report["verdict"] == "inconclusive" and not report["passed"] and report["ships"]
    assert fid["drop_ci95_points"][0] <= 1 < fid["drop_ci95_points"][1] and fid["images_to_resolve"] > 48
    md = (tmp_path / "small" / "report.md").read_text()
    assert "**Verdict: inconclusive.**" in md and f"about {fid['images_to_resolve']} images would resolve it" in md
    config = json.loads((tmp_path / "small" / "bundle" / "config.json").read_text())
    assert config["verified"] is False and config["verdict"] == "inconclusive"

    capsys.readouterr()
    assert main(deploy_args("--max-drop", "1", "--strict", out="strict")) == 3
    assert "INCONCLUSIVE (STRICT" in capsys.readouterr().out
    assert not (tmp_path / "strict" / "bundle").exists()

"""QUANT=auto: PTQ that misses MAX_DROP is recovered by keeping the culprit layer in float, on every
target that can, with the layer, its measured sensitivity and its latency cost in the report."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import ships
from pipeline.cli import main
from targets.fold import fold_batchnorm
from pipeline.model.load import load
from pipeline.model.family import get_spec
from pipeline.quant.sensitivity import layer_sensitivity


@pytest.fixture
def auto_args(outlier_checkpoint, colour_data, tmp_path):
    def args(target, *extra, out=None):
        return ["deploy", "--target", target, "--model", "b0", "--weights", str(outlier_checkpoint), "--data", str(colour_data),
                "--image-size", "64", "--calib-size", "16", "--out", str(tmp_path / (out or target)),
                "--set", "runs=5", "--set", "warmup=2", *extra]

    return args


def test_outlier_model_is_float_exact_and_breaks_plain_ptq(auto_args, tmp_path, tiny_checkpoint, outlier_checkpoint, tiny_arrays):
    """The fixture is what the other tests claim: float unchanged, PTQ far off (the gate fails)."""
    spec = get_spec("b0")
    a, b = load(spec, str(tiny_checkpoint)).model, load(spec, str(outlier_checkpoint)).model
    x = torch.from_numpy(tiny_arrays["test"])
    with torch.no_grad():
        torch.testing.assert_close(b(x), a(x), rtol=1e-3, atol=1e-3)
    assert main(auto_args("openvino", "--quant", "ptq", out="ptq")) == 3
    report = json.loads((tmp_path / "ptq" / "report.json").read_text())
    assert report["accuracy"]["int8"]["top1"] < 0.6
    # A real loss, resolved on 48 images: the whole interval of the drop lies beyond MAX_DROP.
    assert report["verdict"] == "failed" and report["fidelity"]["drop_ci95_points"][0] > 1.0


def test_sensitivity_finds_the_outlier_layer(outlier_checkpoint, tiny_arrays):
    model = load(get_spec("b0"), str(outlier_checkpoint)).model
    folded = fold_batchnorm(model, torch.from_numpy(tiny_arrays["calib"][:1]))
    rows = layer_sensitivity(folded, tiny_arrays["calib"], progress=False)
    layers = [n for n, m in folded.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert [r["layer"] for r in rows] == layers  # every compute layer, in graph order
    ranked = sorted(rows, key=lambda r: -r["sensitivity"])
    assert ranked[0]["layer"] == "features.8.0" and ranked[0]["kind"] == "conv 1x1"
    assert ranked[0]["sensitivity"] > 20 * ranked[1]["sensitivity"]
    assert ranked[0]["top1_agreement"] < 0.8 and ranked[1]["top1_agreement"] >= 0.9


# ONNX Runtime in the default run; OpenVINO (NNCF's accuracy control, ~100 s) and Jetson (~65 s) in make test-e2e.
@pytest.mark.parametrize("target", [pytest.param("openvino", marks=pytest.mark.e2e), "onnx", pytest.param("jetson", marks=pytest.mark.e2e)])
def test_auto_keeps_the_culprit_in_float_and_passes(auto_args, tmp_path, target):
    # fast bias correction: each candidate the search quantizes ~10 s sooner; the culprit breaks PTQ either way
    assert main(auto_args(target, "--quant", "auto", "--set", "quant.bias_correction=fast")) == 0
    run = tmp_path / target
    report = json.loads((run / "report.json").read_text())
    assert ships(report) and report["quant"] == "int8-auto" and "/auto/model." in report["artifact"]
    auto = report["auto"]
    assert auto["reached_max_drop"] and auto["ptq"]["top1"] < 0.6 and auto["final"]["top1"] >= 0.95
    assert [k["layer"] for k in auto["kept_float"]] == ["features.8.0"]
    kept = auto["kept_float"][0]
    assert kept["sensitivity"] > 0.01 and kept["latency_cost_ms"] is not None
    assert ("nncf.quantize_with_accuracy_control" in auto["method"]) == (target == "openvino")
    # PTQ measured beside it in the validation stage, and the shipped model is still int8 elsewhere
    assert report["ptq"]["accuracy"]["top1"] < 0.6 and report["accuracy"]["int8"]["top1"] >= 0.95
    assert report["int8_ops"]["compute_ops_int8_input"] >= report["ptq"]["int8_ops"]["compute_ops_int8_input"] - 2 > 0
    md = (run / "report.md").read_text()
    assert "| int8 PTQ" in md and "**int8 AUTO**" in md and "Layers kept out of int8" in md and "`features.8.0`" in md
    assert (run / "bundle" / "model").is_dir()


@pytest.mark.e2e  # ~45 s; the min_agreement gate is unit-tested in test_report.py
def test_auto_steered_by_agreement_needs_no_label_to_bind(auto_args, tmp_path):
    """MAX_DROP=100 lets any model through on labels; quant.min_agreement=0.9 still keeps the culprit out
    of int8, measured against float's own top-1. OpenVINO takes the greedy search here (NNCF's steers by labels)."""
    assert main(auto_args("openvino", "--quant", "auto", "--max-drop", "100", "--set", "quant.min_agreement=0.9")) == 0
    report = json.loads((tmp_path / "openvino" / "report.json").read_text())
    auto = report["auto"]
    assert "one at a time" in auto["method"] and auto["reached_max_drop"] and auto["reached_min_agreement"]
    assert auto["ptq"]["agreement"] < 0.8 <= 0.9 <= auto["final"]["agreement"]
    assert "features.8.0" in [k["layer"] for k in auto["kept_float"]]
    assert report["accuracy"]["top1_agreement"] >= 0.9 and report["verdict"] != "failed"
    assert "quant.min_agreement 0.9 reached" in (tmp_path / "openvino" / "report.md").read_text()


@pytest.mark.e2e  # ~40 s; the search itself is covered by the ONNX Runtime culprit case
def test_auto_with_ptq_already_good_keeps_nothing(tiny_checkpoint, colour_data, tmp_path):
    args = ["deploy", "--target", "onnx", "--model", "b0", "--weights", str(tiny_checkpoint), "--data", str(colour_data),
            "--image-size", "64", "--calib-size", "16", "--out", str(tmp_path / "run"), "--set", "runs=5", "--quant", "auto"]
    assert main(args) == 0
    auto = json.loads((tmp_path / "run" / "report.json").read_text())["auto"]
    assert auto["kept_float"] == [] and auto["method"] == "PTQ already within MAX_DROP" and auto["reached_max_drop"]


@pytest.mark.e2e  # ~35 s; the verdict rules are unit-tested in test_report.py
def test_auto_reports_failure_honestly_when_budget_is_too_small(auto_args, tmp_path, capsys):
    """No layer may go back to float: the search stops, the report says MAX_DROP was not reached, the gate fails."""
    assert main(auto_args("onnx", "--quant", "auto", "--set", "quant.max_float_layers=0", out="nobudget")) == 3
    report = json.loads((tmp_path / "nobudget" / "report.json").read_text())
    assert report["auto"]["reached_max_drop"] is False and report["verdict"] == "failed" and not report["ships"]
    assert "**not reached**" in (tmp_path / "nobudget" / "report.md").read_text()
    assert not (tmp_path / "nobudget" / "bundle").exists()


def test_onnx_names_map_back_to_pytorch_modules(tmp_path):
    """Layer exclusion hinges on naming: every exported Conv/Gemm maps to its module, torchvision and timm alike."""
    from pipeline.model.load import build, fix_same_padding
    from targets import onnx as onnx_target
    from targets import onnx_graph

    for name in ("b0", "lite0"):
        model = fix_same_padding(build(get_spec(name), 4).eval(), 32)
        example = torch.zeros(1, 3, 32, 32)
        path = onnx_target.TARGET.convert_float(model, example, tmp_path / name)
        modules = {n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
        assert set(onnx_graph.compute_nodes(path)) == modules


def test_unknown_quant_mode_is_one_clear_line(tmp_path, capsys):
    assert main(["int8", "--set", "quant.mode=fp4", "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "error: unknown QUANT='fp4'; use one of ptq, qat, auto"


@pytest.mark.e2e  # ~60 s; QUANT=auto's search itself is covered by the ONNX Runtime case in the default run
def test_tflite_auto_keeps_the_culprit_in_int16_and_stays_full_integer(gain_outlier_checkpoint, colour_data, tmp_path):
    """TFLite cannot keep a layer in float without losing full-integer: the culprit and its input's
    producer run with int16 activations instead (16x8), and the gate's full-integer check still holds."""
    args = ["deploy", "--target", "tflite", "--model", "b0", "--weights", str(gain_outlier_checkpoint), "--data", str(colour_data),
            "--image-size", "64", "--calib-size", "16", "--out", str(tmp_path / "run"), "--set", "runs=5", "--quant", "auto"]
    assert main(args) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    auto = report["auto"]
    assert auto["ptq"]["top1"] < 0.6 and auto["reached_max_drop"] and ships(report)
    assert report["accuracy"]["float"]["top1"] >= 0.9  # the unused outlier channel costs float nothing that matters
    assert [k["layer"] for k in auto["kept_float"]] == ["features.8.0"] and auto["kept_precision"].startswith("int16")
    ops = report["int8_ops"]
    assert ops["full_integer"] is True and ops["op_types"].get("CONV_2D:int16") == 2  # the culprit and its producer
    assert "int16 activations (16x8) on the board" in (tmp_path / "run" / "report.md").read_text()


@pytest.mark.e2e  # ~21 s of LiteRT conversion; the TFLite search that uses the names is in make test-e2e too
def test_tflite_names_map_back_to_pytorch_modules(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from pipeline.model.load import build, fix_same_padding
    from targets import tflite

    model = fix_same_padding(build(get_spec("lite0"), 4).eval(), 32)  # as deploy hands it over
    path = tflite.TARGET.convert_float(model, torch.zeros(1, 3, 32, 32), tmp_path / "lite0")
    it = Interpreter(model_path=str(path))
    names = {t["index"]: t["name"] for t in it.get_tensor_details()}
    mapped = {tflite.torch_name(names[o["outputs"][0]]) for o in it._get_ops_details()
              if o["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")}
    assert mapped == {n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}


def test_an_onnx_layer_kept_in_float_keeps_the_activation_it_reads(tmp_path):
    """ONNX Runtime's quantizer drops each ReLU6 whose range the next QuantizeLinear's grid clips to, so a layer
    kept in float must read its input through that range. Fed the unclipped depthwise output instead, real Lite0
    with its projection conv kept in float agreed with float on 0.03-0.10 of photos (QUANT=auto broke where it
    should recover)."""
    import cv2
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from edge.runners import OnnxRuntimeRunner
    from pipeline.config import QuantConfig
    from pipeline.model.load import fix_same_padding
    from pipeline.data.sample import CALIBRATION_PHOTOS, _skimage_photo
    from targets import onnx as onnx_target
    from targets import onnx_graph

    spec, size, layer = get_spec("lite0"), 128, "blocks.1.0.conv_pwl"  # a 1x1 projection reading a ReLU6 output
    model = fix_same_padding(load(spec).model.eval(), size)
    pre = spec.preprocess.at_size(size)
    photos = np.stack([pre(cv2.imread(str(_skimage_photo(p)))) for p in CALIBRATION_PHOTOS])
    float_path = onnx_target.TARGET.convert_float(model, torch.zeros(1, 3, size, size), tmp_path / "float")
    quant = QuantConfig(bias_correction="off")
    kept = onnx_target.TARGET.quantize(model, float_path, photos, quant, tmp_path / "kept", exclude=(layer,), isa="avx512-vnni")
    graph = onnx.load(str(kept)).graph
    producer = {o: n for n in graph.node for o in n.output}
    clip = producer[next(n for n in graph.node if n.name == onnx_graph.compute_nodes(float_path)[layer]).input[0]]
    bounds = {t.name: float(numpy_helper.to_array(t)) for t in graph.initializer if t.name in clip.input[1:]}
    assert clip.op_type == "Clip" and bounds[clip.input[1]] == 0.0 and bounds[clip.input[2]] == pytest.approx(6.0, rel=1e-4)
    reference = OnnxRuntimeRunner(float_path).infer(photos).argmax(1)
    agreement = (OnnxRuntimeRunner(kept, unsaturated_int8=True).infer(photos).argmax(1) == reference).mean()
    assert agreement >= 0.75, agreement

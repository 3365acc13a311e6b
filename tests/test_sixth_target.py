"""Adding a target is one module and one line in the target table (targets.TARGETS): a throwaway sixth target, an
ONNX Runtime variant on one thread that reuses the ONNX target's artifacts, deploys end to end with nothing else
changed: no config branch, no profile, no report or bundle special case."""
from __future__ import annotations

import json

import targets
from pipeline.cli import main

SIXTH = '''
"""A throwaway sixth target: ONNX Runtime on a single thread, reusing the ONNX target's artifacts."""
from targets import get_target
from targets.base import Target

ONNX = get_target("onnx")


class SingleThreadOnnxRuntime(Target):
    name = "sixth"
    requires = ONNX.requires
    device_runtime = "onnxruntime"
    device_requires = ONNX.device_requires
    artifact_suffix = ".onnx"
    pixel_type = "uint8"

    def convert_float(self, model, example, out):
        return ONNX.convert_float(model, example, out)

    def quantize(self, model, float_artifact, calibration, quant, out, exclude=(), *, isa, settings=None):
        return ONNX.quantize(model, float_artifact, calibration, quant, out, exclude, isa=isa)

    def export_qat(self, qat_model, float_model, example, calibration, quant, out, *, isa):
        return ONNX.export_qat(qat_model, float_model, example, calibration, quant, out, isa=isa)

    def with_pixel_input(self, artifact, preprocess, out):
        return ONNX.with_pixel_input(artifact, preprocess, out)

    def describe(self, artifact):
        return ONNX.describe(artifact)

    def runner(self, artifact, threads=0, precision="f32", purpose="time", arithmetic=None):
        return super().runner(artifact, 1, precision, purpose, arithmetic)  # what makes it a variant: one thread


TARGET = SingleThreadOnnxRuntime()
'''


def test_a_sixth_target_is_one_module_and_one_table_line(tmp_path, monkeypatch, tiny_checkpoint, colour_data):
    (tmp_path / "sixth_target.py").write_text(SIXTH)  # the one module
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(targets.TARGETS, "sixth", "sixth_target")  # the one table line
    out = tmp_path / "run"
    assert main(["deploy", "--target", "sixth", "--model", "b0", "--weights", str(tiny_checkpoint), "--data", str(colour_data),
                 "--image-size", "64", "--calib-size", "8", "--out", str(out), "--set", "runs=3", "--set", "warmup=1",
                 "--set", "quant.bias_correction=off"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["target"] == "sixth" and report["artifact"].endswith("int8/model.onnx")
    validation = json.loads((out / "validate" / "stage.json").read_text())["result"]
    assert validation["runtime"]["threads"] == 1 and validation["runtime"]["int8"].startswith("onnxruntime")
    assert validation["camera_input"]["pixel_type"] == "uint8"  # its pixel artifact, made and checked like ONNX's
    config = json.loads((out / "bundle" / "config.json").read_text())
    assert config["runtime"] == "onnxruntime" and (out / "bundle" / "model").is_dir()

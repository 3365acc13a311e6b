"""TARGET=tflite (experimental) with the real litert-torch converter and the real LiteRT interpreter."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("litert_torch", reason="TARGET=tflite needs pip install -e .[tflite]")
pytest.importorskip("ai_edge_quantizer", reason="TARGET=tflite needs pip install -e .[tflite]")

import targets  # noqa: E402
from pipeline.config import QuantConfig  # noqa: E402
from pipeline.validate import agreement, parity  # noqa: E402

tflite = targets.get_target("tflite")


@pytest.fixture(scope="module")
def artifacts(tiny_arrays, tmp_path_factory):
    t = tiny_arrays
    out = tmp_path_factory.mktemp("tflite")
    fp32 = tflite.convert_float(t["model"], t["example"], out / "float")
    int8 = tflite.quantize(t["model"], fp32, t["calib"], QuantConfig(), out / "int8")
    return {**t, "fp32": fp32, "int8": int8}


def test_float_tflite_matches_pytorch(artifacts):
    info = tflite.describe(artifacts["fp32"])
    assert info["input"]["dtype"] == "float32" and info["input"]["shape"][-1] == 3  # NHWC
    p = parity(tflite.runner(artifacts["fp32"]).infer(artifacts["test"]), artifacts["ref"])
    assert p["relative_diff"] < 1e-4 and p["top1_agreement"] == 1.0  # stated tolerance: 1e-4 of the logit scale


def test_int8_tflite_is_full_integer(artifacts):
    info = tflite.describe(artifacts["int8"])
    assert info["input"]["dtype"] == "int8" and info["output"]["dtype"] == "int8"
    assert info["input"]["scale"] > 0 and info["output"]["scale"] > 0
    assert info["float_compute_ops"] == [] and info["compute_ops_int8_input"] == info["compute_ops"] > 50
    assert not [op for op in info["op_types"] if op.endswith(":float32")], info["op_types"]


def test_runner_uses_the_models_own_quantization(artifacts):
    from ai_edge_litert.interpreter import Interpreter

    x = artifacts["test"][:1]
    it = Interpreter(model_path=str(artifacts["int8"]))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    (si, zi), (so, zo) = inp["quantization"], out["quantization"]
    q = np.clip(np.round(x.transpose(0, 2, 3, 1) / si) + zi, -128, 127).astype(np.int8)
    it.set_tensor(inp["index"], q)
    it.invoke()
    expected = (it.get_tensor(out["index"]).astype(np.float32) - zo) * so
    np.testing.assert_allclose(tflite.runner(artifacts["int8"]).infer(x), expected, rtol=0, atol=1e-6)


def test_int8_tflite_agrees_on_a_model_that_learnt_something(artifacts):
    logits = tflite.runner(artifacts["int8"]).infer(artifacts["test"])
    assert agreement(logits, artifacts["ref"]) >= 0.85

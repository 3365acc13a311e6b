"""The gate's verdict and reasons, one by one."""
from __future__ import annotations

from pipeline.config import DeployConfig
from pipeline.report import gate


def _validation(both_right=900, float_only=5, int8_only=5, both_wrong=90, rel=1e-6):
    n = both_right + float_only + int8_only + both_wrong
    return {"paired": {"both_right": both_right, "float_only": float_only, "int8_only": int8_only, "both_wrong": both_wrong},
            "agree": n - float_only - int8_only, "images": n, "float_parity": {"relative_diff": rel}}


def test_gate_passes_an_honest_int8_model():
    g = gate(DeployConfig(), _validation(), {"compute_ops_int8_input": 50})
    assert g["verdict"] == "passed" and g["failures"] == [] and g["ships"]


def test_gate_reasons():
    cfg = DeployConfig(max_drop=1.0)
    g = gate(cfg, _validation(700, 150, 10, 140, 1e-2), {"compute_ops_int8_input": 0})
    assert g["verdict"] == "failed" and not g["ships"] and len(g["failures"]) == 3
    reasons = g["failures"]
    assert "the loss is real" in reasons[0] and "conversion is wrong" in reasons[1] and "not quantized" in reasons[2]
    ops = {"compute_ops_int8_input": 50, "full_integer": False, "float_compute_ops": ["LOGISTIC:float32"]}
    g = gate(DeployConfig(target="tflite"), _validation(), ops)
    assert g["verdict"] == "failed" and g["failures"] == ["float ops remain in the full-integer artifact: LOGISTIC:float32"]
    # a target that is not full-integer by declaration may keep a few ops float (NNCF's squeeze-excite convs)
    assert gate(DeployConfig(target="openvino"), _validation(), ops)["verdict"] == "passed"


def test_too_few_images_is_inconclusive_and_strict_stops_it():
    few = _validation(3, 0, 0, 0)
    g = gate(DeployConfig(), few, {"compute_ops_int8_input": 50})
    assert g["verdict"] == "inconclusive" and g["ships"] and g["fidelity"]["images_to_resolve"] > 100
    assert not gate(DeployConfig(strict=True), few, {"compute_ops_int8_input": 50})["ships"]
    # a conversion failure is a failure however few the images
    assert gate(DeployConfig(), _validation(3, 0, 0, 0, 1e-2), {"compute_ops_int8_input": 50})["verdict"] == "failed"


def test_gate_holds_min_agreement():
    from pipeline.config import QuantConfig

    v = {**_validation(), "accuracy": {"top1_agreement": 0.9}}
    ops = {"compute_ops_int8_input": 50}
    g = gate(DeployConfig(quant=QuantConfig(min_agreement=0.95)), v, ops)
    assert g["verdict"] == "failed" and g["failures"] == ["int8 agrees with float on 0.900 of the validation images, below quant.min_agreement=0.95"]
    assert gate(DeployConfig(quant=QuantConfig(min_agreement=0.9)), v, ops)["failures"] == []

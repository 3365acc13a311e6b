"""The gate's reasons, one by one."""
from __future__ import annotations

from pipeline.config import DeployConfig
from pipeline.report import gate


def _validation(float_top1=0.9, int8_top1=0.9, rel=1e-6):
    return {"accuracy": {"float": {"top1": float_top1}, "int8": {"top1": int8_top1}}, "float_parity": {"relative_diff": rel}}


def test_gate_passes_an_honest_int8_model():
    assert gate(DeployConfig(), _validation(), {"compute_ops_int8_input": 50}) == (True, [])


def test_gate_reasons():
    cfg = DeployConfig(max_drop=1.0)
    ok, reasons = gate(cfg, _validation(0.90, 0.88, 1e-2), {"compute_ops_int8_input": 0})
    assert not ok and len(reasons) == 3
    assert "2.00 points below float" in reasons[0] and "conversion is wrong" in reasons[1] and "not quantized" in reasons[2]
    ok, reasons = gate(cfg, _validation(), {"compute_ops_int8_input": 50, "full_integer": False,
                                            "float_compute_ops": ["LOGISTIC:float32"]})
    assert not ok and reasons == ["float ops remain in the full-integer artifact: LOGISTIC:float32"]

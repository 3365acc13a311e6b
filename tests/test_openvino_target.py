"""The OpenVINO target with the real runtime and real NNCF, on a tiny trained model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import targets
from conftest import CLASSES, TINY_SIZE, make_image
from pipeline.config import QuantConfig
from pipeline.family import get_spec
from pipeline.models import load
from pipeline.validate import agreement, parity

ov_target = targets.get_target("openvino")


@pytest.fixture(scope="module")
def artifacts(tiny_checkpoint, tmp_path_factory):
    spec = get_spec("b0")
    pre = spec.preprocess.at_size(TINY_SIZE)
    model = load(spec, str(tiny_checkpoint)).model
    rng = np.random.default_rng(11)
    calib = np.stack([pre(make_image(CLASSES[i % 4], rng)) for i in range(16)])
    ys = rng.integers(0, 4, 48)
    test = np.stack([pre(make_image(CLASSES[c], rng)) for c in ys])
    out = tmp_path_factory.mktemp("ov")
    example = torch.zeros(1, 3, TINY_SIZE, TINY_SIZE)
    fp32 = ov_target.convert_float(model, example, out / "float")
    int8 = ov_target.quantize(model, fp32, calib, QuantConfig(), out / "int8")
    with torch.no_grad():
        ref = model(torch.from_numpy(test)).numpy()
    return {"model": model, "fp32": fp32, "int8": int8, "test": test, "labels": ys, "ref": ref}


def test_fp32_ir_matches_pytorch(artifacts):
    r = ov_target.runner(artifacts["fp32"], precision="f32")
    assert "f32" in r.runtime  # the bf16 trap: the float reference must run in true f32
    p = parity(r.infer(artifacts["test"]), artifacts["ref"])
    assert p["relative_diff"] < 1e-4, p  # stated tolerance for fp32 IR vs PyTorch
    assert p["top1_agreement"] == 1.0


def test_fp32_ir_is_saved_uncompressed(artifacts):
    import openvino as ov

    m = ov.Core().read_model(str(artifacts["fp32"]))
    types = {op.get_output_element_type(0).get_type_name() for op in m.get_ops() if op.get_type_name() == "Constant"}
    assert "f16" not in types


def test_int8_ir_is_quantized_and_agrees_with_float(artifacts):
    ops = ov_target.describe(artifacts["int8"])
    # NNCF leaves the squeeze-excite 1x1 convs (on pooled 1x1 maps) in float: a sliver of the compute.
    assert ops["compute_ops"] > 50 and ops["compute_ops_int8_input"] >= 49, ops
    assert ops["int8_macs_share"] > 0.97, ops
    r = ov_target.runner(artifacts["int8"], precision="f32")
    executed = r.executed_precisions()
    # What the CPU plugin really executes: every conv outside squeeze-excite in 8 bits.
    assert executed.get("u8", 0) + executed.get("i8", 0) >= ops["compute_ops_int8_input"], executed
    logits = r.infer(artifacts["test"])
    assert agreement(logits, artifacts["ref"]) >= 0.9  # the tiny model has learnt the colours
    assert (logits.argmax(1) == artifacts["labels"]).mean() >= 0.9


def test_float_ir_is_not_quantized(artifacts):
    ops = ov_target.describe(artifacts["fp32"])
    assert ops["fake_quantize_ops"] == 0 and ops["compute_ops_int8_input"] == 0


def test_default_precision_would_be_reported(artifacts):
    # Without the hint the runtime picks its own precision, and the runner says which one it got.
    r = ov_target.runner(artifacts["fp32"], precision="")
    assert r.runtime.startswith("openvino ") and r.runtime.endswith(")")
    assert r.threads >= 1

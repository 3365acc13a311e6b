"""The OpenVINO target with the real runtime and real NNCF, on a tiny trained model."""
from __future__ import annotations

import math

import numpy as np

import pytest

import targets
from pipeline.scores import agreement, parity

ov_target = targets.get_target("openvino")


@pytest.fixture(scope="module")
def artifacts(tiny_arrays, target_artifacts):
    return {**tiny_arrays, **target_artifacts("openvino")}


def test_fp32_ir_matches_pytorch(artifacts):
    r = ov_target.runner(artifacts["fp32"], precision="f32")
    assert "f32" in r.runtime  # the bf16 trap: the float reference must run in true f32
    p = parity(r.infer(artifacts["test"]), artifacts["ref"])
    assert p["relative_diff"] < 1e-4, p  # stated tolerance for fp32 IR vs PyTorch
    assert p["top1_agreement"] == 1.0


def test_the_runner_reads_batches_in_place_and_read_only_arrays_too(artifacts):
    """The runner hands the request our array as a shared tensor: a batch of several, a Fortran-ordered copy and
    a read-only array (which OpenVINO cannot share) give what one contiguous image at a time gives."""
    r = ov_target.runner(artifacts["fp32"], precision="f32")
    batch = artifacts["test"][:3]
    one_by_one = [r.infer(batch[i : i + 1])[0] for i in range(3)]
    readonly = batch.copy()
    readonly.flags.writeable = False
    for fed in (batch, np.asfortranarray(batch), readonly):
        out = r.infer(fed)
        assert out.shape[0] == 3 and all((out[i] == one_by_one[i]).all() for i in range(3))


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


def test_without_the_hint_the_runner_reports_the_precision_it_got(artifacts):
    """The bf16 trap: unhinted, OpenVINO runs "fp32" as bf16 on CPUs that have it; the label must say so."""
    import openvino as ov

    r = ov_target.runner(artifacts["fp32"], precision="")
    has_bf16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert r.runtime.endswith(f"(CPU, {'bf16' if has_bf16 else 'f32'})"), r.runtime
    assert ov_target.runner(artifacts["fp32"], precision="f32").runtime.endswith("(CPU, f32)")


def _per_channel_activation_quantizers(ir) -> int:
    import openvino as ov

    model = ov.Core().read_model(str(ir))
    return sum(op.get_type_name() == "FakeQuantize" and op.input_value(0).get_node().get_type_name() != "Constant"
               and math.prod(op.input_value(1).get_shape()) > 1 for op in model.get_ops())


def test_activations_get_one_scale_per_tensor(artifacts):
    """The default (0.985 against 0.979 agreement on 1000 ImageNet photos): NNCF's own CPU default gives each of
    b0's 16 depthwise inputs a scale per channel, so this fails if quant.activation_scales stops reaching NNCF."""
    assert _per_channel_activation_quantizers(artifacts["int8"]) == 0

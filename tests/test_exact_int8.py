"""A board whose int8 sums never saturate (VNNI, Arm dot product, TensorRT), validated from a host whose fused kernels
do (x86 with AVX2 only): the host runs the artifact with unsaturated int8 sums, so it sees the board's answers.

The layer below sums whole numbers of steps far from any rounding tie, so its unsaturated result is the int32 sum on
any CPU, whatever order the float sums take."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import int8_isa, int8_runner
from edge.isa import must_not_saturate, saturates

CHANNELS, OUT = 64, 8
STEP = 0.01  # both grids: activations 0..255 steps, weights ±127 steps
PIXELS = np.full((1, CHANNELS, 4, 4), 255 * STEP, np.float32)  # every activation at the top of its u8 grid
EXACT = CHANNELS * 255 * 127 * STEP * STEP  # what int32 sums give; 16-bit pair sums cap each pair at 32767


def _openvino_ir(path):
    """NNCF's IR pattern: a u8 FakeQuantize feeding a convolution whose weights are int8 constants times a scale."""
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([1, CHANNELS, 4, 4], np.float32, name="x")
    lo, hi = ops.constant(np.float32(0)), ops.constant(np.float32(255 * STEP))
    fq = ops.fake_quantize(x, lo, hi, lo, hi, 256)
    weights = ops.multiply(ops.convert(ops.constant(np.full((OUT, CHANNELS, 1, 1), 127, np.int8)), np.float32),
                           ops.constant(np.full((OUT, 1, 1, 1), STEP, np.float32)))
    ov.save_model(ov.Model([ops.convolution(fq, weights, [1, 1], [0, 0], [0, 0], [1, 1])], [x]), str(path))
    return path


def _onnx_qdq(path):
    """The Q/DQ pattern ONNX Runtime fuses into one QLinearConv (u8 activations, s8 per-channel weights)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    consts = {"xs": np.array(STEP, np.float32), "xz": np.array(0, np.uint8), "w": np.full((OUT, CHANNELS, 1, 1), 127, np.int8),
              "ws": np.full((OUT,), STEP, np.float32), "wz": np.zeros((OUT,), np.int8), "ys": np.array(1.0, np.float32),
              "yz": np.array(0, np.uint8)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]), helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0), helper.make_node("Conv", ["xd", "wd"], ["y"]),
             helper.make_node("QuantizeLinear", ["y", "ys", "yz"], ["yq"]), helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["out"])]
    graph = helper.make_graph(nodes, "pairs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(PIXELS.shape))],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, OUT, 4, 4])],
                              [numpy_helper.from_array(v, k) for k, v in consts.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.mark.int8
@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_unsaturated_sums_give_the_boards_answer_where_this_host_saturates(runtime, tmp_path):
    """u8 255 × s8 127 pairs: 64770 per pair, over int16's 32767. Fused on an AVX2-only host that is cut to about
    half; VNNI's int32 sums keep it. The unsaturated runner gives the full sum on any host."""
    make = _openvino_ir if runtime == "openvino" else _onnx_qdq
    artifact = make(tmp_path / ("model.xml" if runtime == "openvino" else "model.onnx"))
    fused, exact = int8_runner(runtime, artifact), int8_runner(runtime, artifact, unsaturated=True)
    assert "unsaturated int8 sums" in exact.runtime and "unsaturated" not in fused.runtime
    np.testing.assert_allclose(exact.infer(PIXELS), EXACT, rtol=0.01)
    here = float(fused.infer(PIXELS).mean())
    if saturates(int8_isa(), runtime):
        assert here < 0.6 * EXACT  # what the board would not compute: why the host must not saturate
    else:
        assert here == pytest.approx(EXACT, rel=0.01)
    if runtime == "openvino":  # the CPU plugin really leaves int8 for the exact sums
        assert fused.executed_precisions() == {"u8": 1} and exact.executed_precisions() == {"f32": 1}


@pytest.mark.parametrize("made_for,host,exact", [
    ("avx512-vnni", "avx2", True), ("arm-dotprod", "avx2", True), ("gpu", "avx2", True), ("arm-neon", "avx2", True),
    ("avx2", "avx2", False), ("avx2", "avx512-vnni", False), ("avx512-vnni", "avx512-vnni", False), ("gpu", "arm-dotprod", False),
])
def test_only_a_saturating_host_validating_for_an_exact_board_sums_exactly(made_for, host, exact):
    assert must_not_saturate(made_for, host) == exact

"""ONNX Runtime and Jetson (TensorRT Q/DQ) targets with the real exporter, quantizers and runtime."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import targets
from conftest import on_test_cpu
from edge.runners import tensorrt as tensorrt_engine
from pipeline.config import QuantConfig
from targets.fold import count_batchnorm, fold_batchnorm
from pipeline.scores import agreement, parity

onnx_target = targets.get_target("onnx")
from targets import nncf_common, onnx_graph  # the ONNX targets' shared graph and NNCF work
jetson = targets.get_target("jetson")


@pytest.fixture(scope="module")
def tiny(tiny_arrays, target_artifacts):
    onnx_files = target_artifacts("onnx")
    return {**tiny_arrays, "fp32": onnx_files["fp32"], "ort_int8": onnx_files["int8"], "qdq": target_artifacts("jetson")["int8"]}


def test_bias_correction_reaches_the_quantizer_that_lacks_it(tiny):
    """NNCF's corrected biases go into the float model ONNX Runtime quantizes and into its int8 file;
    quant.bias_correction=off leaves the model as it is. (What they gain is measured on real weights:
    tools/measure_fidelity.py.)"""
    t = tiny
    # computed for 8-bit weights on any ISA, as onnx.quantize asks
    corrected = dict(nncf_common.bias_corrected(t["model"], t["fp32"], t["calib"], QuantConfig()).named_modules())
    folded = fold_batchnorm(t["model"], torch.from_numpy(t["calib"][:1]))
    convs = [(n, m) for n, m in folded.named_modules() if isinstance(m, torch.nn.Conv2d)]
    # every conv NNCF quantizes: all but the 32 squeeze-excite ones on pooled vectors
    assert len(convs) == 81 and sum(not torch.equal(m.bias, corrected[n].bias) for n, m in convs) >= 45
    assert nncf_common.bias_corrected(t["model"], t["fp32"], t["calib"], QuantConfig(bias_correction="off")) is None

    # ...and the int8 file carries them: each int32 bias, dequantized, is the corrected one to its step.
    g = onnx.load(str(t["ort_int8"])).graph
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    carried = 0
    for node in g.node:
        dq = producer.get(node.input[2]) if node.op_type == "Conv" and len(node.input) > 2 else None
        if dq is not None and dq.op_type == "DequantizeLinear":
            step = inits[dq.input[1]]
            bias = inits[dq.input[0]] * step
            name = onnx_graph.torch_name(node.name)
            assert np.abs(bias - corrected[name].bias.detach().numpy()).max() <= step.max()
            carried += np.abs(bias - dict(convs)[name].bias.detach().numpy()).max() > 2 * step.max()
    assert carried >= 45


def test_fold_batchnorm_keeps_outputs(tiny):
    folded = fold_batchnorm(tiny["model"], torch.from_numpy(tiny["test"][:2]))
    assert count_batchnorm(tiny["model"]) == 49 and count_batchnorm(folded) == 0
    with torch.no_grad():
        p = parity(folded(torch.from_numpy(tiny["test"])).numpy(), tiny["ref"])
    assert p["relative_diff"] < 1e-4 and p["top1_agreement"] == 1.0


def test_fp32_onnx_passes_checker_and_matches_pytorch(tiny):
    onnx.checker.check_model(str(tiny["fp32"]))
    info = onnx_target.describe(tiny["fp32"])
    assert info["batchnorm_ops"] == 0 and info["quantize_ops"] == 0 and info["compute_ops_int8_input"] == 0
    p = parity(onnx_target.runner(tiny["fp32"]).infer(tiny["test"]), tiny["ref"])
    assert p["relative_diff"] < 1e-4 and p["top1_agreement"] == 1.0  # stated tolerance: 1e-4 of the logit scale


def test_onnxruntime_int8_has_int8_weights_on_every_conv(tiny):
    info = onnx_target.describe(tiny["ort_int8"])
    assert info["compute_ops"] == 82 and info["compute_ops_int8_input"] == 82, info  # squeeze-excite included
    assert info["batchnorm_ops"] == 0 and info["custom_domain_ops"] == []
    g = onnx.load(str(tiny["ort_int8"])).graph
    conv_weights = {n.input[1] for n in g.node if n.op_type == "Conv"}
    producer = {o: n for n in g.node for o in n.output}
    inits = {i.name: i for i in g.initializer}
    for w in conv_weights:
        dq = producer[w]
        assert dq.op_type == "DequantizeLinear" and inits[dq.input[0]].data_type == onnx.TensorProto.INT8
    logits = onnx_target.runner(tiny["ort_int8"]).infer(tiny["test"])
    assert agreement(logits, tiny["ref"]) >= 0.9 and (logits.argmax(1) == tiny["labels"]).mean() >= 0.9


def test_qdq_for_tensorrt_is_standard_symmetric_and_well_placed(tiny):
    info = jetson.describe(tiny["qdq"])
    onnx.checker.check_model(str(tiny["qdq"]))
    assert info["custom_domain_ops"] == [] and info["batchnorm_ops"] == 0
    assert info["nonzero_zero_points"] == 0  # TensorRT needs symmetric quantization
    assert info["uint8_quantizers"] == 0 and info["quantize_ops"] > 50  # and int8 ones
    assert info["per_channel_activation_quantizers"] == 0  # TensorRT: one scale per activation tensor
    assert info["int8_macs_share"] > 0.97
    # Every convolution outside squeeze-excite reads int8 weights and activations.
    assert info["compute_ops_int8_input"] >= 49, info
    assert info["residual_adds"] == 9 and info["residual_adds_int8"] == 9
    assert info["global_pools_int8"] == info["global_pools"] >= 1
    assert info["se_multiplies"] == 16 and info["se_multiplies_int8"] == 16


def test_qdq_runs_in_onnxruntime_as_the_reference(tiny):
    r = jetson.runner(tiny["qdq"])
    if not tensorrt_engine.available()[0]:
        assert "TensorRT engine not built on this host" in r.runtime and "int8 reference" in r.runtime
    logits = r.infer(tiny["test"])
    assert agreement(logits, tiny["ref"]) >= 0.9 and (logits.argmax(1) == tiny["labels"]).mean() >= 0.9


INTEGER_KERNELS = ("QLinear", "Integer", "QGemm", "QAttention", "DynamicQuantize")  # ONNX Runtime's fused int8 ops


def _with_classifier_input(qdq, dest):
    """A copy of the Q/DQ file that also outputs the classifier's int8 input (the QuantizeLinear feeding the Gemm
    through DQ and Flatten), with that input's step and the classifier's dequantized weights."""
    model = onnx.load(str(qdq))
    g = model.graph
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    gemm = next(n for n in g.node if n.op_type == "Gemm")
    node = producer[gemm.input[0]]
    while node.op_type != "QuantizeLinear":
        node = producer[node.input[0]]
    w_dq = producer[gemm.input[1]]
    weights = inits[w_dq.input[0]].astype(np.float64) * inits[w_dq.input[1]].reshape(-1, 1)
    int8_type = onnx.helper.np_dtype_to_tensor_dtype(inits[node.input[2]].dtype)  # the zero point's: int8 or uint8
    g.output.append(onnx.helper.make_tensor_value_info(node.output[0], int8_type, None))
    onnx.save(model, str(dest))
    return dest, node.output[0], float(inits[node.input[1]]), weights


@pytest.mark.int8
def test_host_reference_for_tensorrt_is_unsaturated_int8_on_any_cpu(tiny, tmp_path):
    """Without TensorRT, the Q/DQ file runs unfused: int8 values summed in float (TensorRT sums them in int32), no
    integer kernel that could saturate, and the file's quantization as written, as ONNX Runtime's op-by-op run
    (ORT_DISABLE_ALL) computes it. The two may sum in another float order, which can move a value on a rounding tie by
    one step: so the classifier's int8 input may differ by at most one step per value, and the logits only by what
    those steps times the classifier's weights give (real Lite0 on a Zen 3: agreement with float 0.243 fused, 0.878
    unfused)."""
    if tensorrt_engine.available()[0]:
        pytest.skip("TensorRT is here: the engine itself is the int8 reference")
    probe, pooled, step, weights = _with_classifier_input(tiny["qdq"], tmp_path / "probe.onnx")
    x = tiny["test"][:8]
    got = on_test_cpu(_unfused_against_op_by_op, str(tiny["qdq"]), str(probe), pooled, x, str(tmp_path / "as_run.onnx"))
    assert "Q/DQ unfused" in got["runtime"]
    assert not [op for op in got["as_run"] if any(k in op for k in INTEGER_KERNELS)]
    assert got["as_run"].count("QuantizeLinear") == [n.op_type for n in onnx.load(str(tiny["qdq"])).graph.node].count("QuantizeLinear")
    (logits, q), (expected, q_expected) = got["unfused"], got["op_by_op"]
    steps = np.abs(q.astype(int) - q_expected.astype(int)).reshape(len(x), -1)
    assert steps.max() <= 1, f"{(steps > 1).sum()} classifier inputs moved by more than one int8 step"
    explained = step * steps @ np.abs(weights).T  # what those steps can move each logit by
    np.testing.assert_array_less(np.abs(logits - expected), explained + 1e-5 * np.abs(expected).max())
    np.testing.assert_allclose(got["runner"], logits, rtol=0, atol=1e-6 * np.abs(logits).max())  # the runner is that session


def _unfused_against_op_by_op(qdq: str, probe: str, pooled: str, x, as_run: str) -> dict:
    """The Jetson host reference's session on the probe file against ONNX Runtime's op-by-op run (in the CPU int8
    tests run on: conftest.on_test_cpu); the graph as that session runs it."""
    import onnxruntime as ort

    r = jetson.runner(Path(qdq))
    options = r.session.get_session_options()
    options.optimized_model_filepath = as_run
    ort.InferenceSession(qdq, options, providers=["CPUExecutionProvider"])
    reference = ort.SessionOptions()
    reference.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sessions = [ort.InferenceSession(probe, o, providers=["CPUExecutionProvider"]) for o in (r.session.get_session_options(), reference)]
    unfused, op_by_op = [[np.concatenate(a) for a in zip(*(s.run(["logits", pooled], {"input": x[i : i + 1]}) for i in range(len(x))))]
                         for s in sessions]
    return {"runtime": r.runtime, "as_run": [n.op_type for n in onnx.load(as_run).graph.node], "unfused": unfused,
            "op_by_op": op_by_op, "runner": r.infer(x)}


def test_engine_cache_key_follows_onnx_trt_gpu_and_precision(tiny, tmp_path):
    key = tensorrt_engine.engine_cache_key(tiny["qdq"], "10.3.0", "Orin", "int8")
    assert key == tensorrt_engine.engine_cache_key(tiny["qdq"], "10.3.0", "Orin", "int8")
    changed = tmp_path / "changed.onnx"
    changed.write_bytes(tiny["qdq"].read_bytes() + b"\0")
    others = {
        tensorrt_engine.engine_cache_key(changed, "10.3.0", "Orin", "int8"),
        tensorrt_engine.engine_cache_key(tiny["qdq"], "8.5.2", "Orin", "int8"),
        tensorrt_engine.engine_cache_key(tiny["qdq"], "10.3.0", "Xavier", "int8"),
        tensorrt_engine.engine_cache_key(tiny["qdq"], "10.3.0", "Orin", "fp16"),
    }
    assert key not in others and len(others) == 4


def test_tensorrt_engine_build_and_run(tiny, tmp_path):
    ok, why = tensorrt_engine.available()
    if not ok:
        pytest.skip(f"TensorRT engine not testable here: {why}")
    engine = tensorrt_engine.build_engine(tiny["qdq"], tmp_path, "int8")
    assert tensorrt_engine.build_engine(tiny["qdq"], tmp_path, "int8") == engine  # cached
    logits = tensorrt_engine.TensorRTRunner(engine).infer(tiny["test"])
    assert agreement(logits, tiny["ref"]) >= 0.9


@pytest.fixture(scope="module")
def real_lite0(tmp_path_factory):
    """Real Lite0 at 128 px, its float ONNX and 16 real photos: ReLU6 throughout, as the fused NNCF recipe needs."""
    import cv2

    from pipeline.model.family import get_spec
    from pipeline.model.load import fix_same_padding, load
    from pipeline.data.sample import CALIBRATION_PHOTOS, _skimage_photo

    spec, size = get_spec("lite0"), 128
    model = fix_same_padding(load(spec).model.eval(), size)
    pre = spec.preprocess.at_size(size)
    photos = np.stack([pre(cv2.imread(str(_skimage_photo(p)))) for p in CALIBRATION_PHOTOS])
    fp32 = onnx_target.convert_float(model, torch.zeros(1, 3, size, size), tmp_path_factory.mktemp("lite0") / "float")
    return {"model": model, "photos": photos, "fp32": fp32}


def test_nncf_int8_for_avx2_fuses_fully_in_onnxruntime_and_keeps_its_values(real_lite0, tmp_path):
    """For boards that saturate, Lite models take NNCF's int8 (overflow fix, its own bias correction; 0.986 against
    ONNX Runtime's 0.965 on 1000 ImageNet photos). As NNCF writes it, ONNX Runtime fuses 12 of 49 convolutions;
    rewritten, every convolution and residual add runs in int8, and the rewrite moves no value off its grid."""
    import copy

    import onnxruntime as ort

    from edge.runners import OnnxRuntimeRunner

    t, quant = real_lite0, QuantConfig(preset="performance", bias_correction="fast")
    assert onnx_graph.activations_fold_into_grids(t["fp32"])
    nncf_file = nncf_common.nncf_quantize(t["fp32"], t["photos"], quant, saturates=True)
    written = tmp_path / "nncf.onnx"
    onnx.save(copy.deepcopy(nncf_file), str(written))
    made = onnx_target.quantize(t["model"], t["fp32"], t["photos"], quant, tmp_path / "int8", isa="avx2")

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(made), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert ops.count("QLinearConv") == 49 and "Conv" not in ops and "FusedConv" not in ops
    assert ops.count("QLinearAdd") == 9 and "Add" not in ops

    exact_before = OnnxRuntimeRunner(written, unsaturated_int8=True).infer(t["photos"])
    exact_after = OnnxRuntimeRunner(made, unsaturated_int8=True).infer(t["photos"])
    assert parity(exact_after, exact_before)["relative_diff"] < 1e-3  # int32 biases round to a step of their own
    reference = onnx_target.runner(t["fp32"]).infer(t["photos"])
    assert agreement(onnx_target.runner(made).infer(t["photos"]), reference) >= 0.8

    g = onnx.load(str(made)).graph
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in g.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 4}
    depthwise = {w for w, a in weights.items() if a.shape[1] == 1}
    assert depthwise and all(np.abs(a.astype(int)).max() <= 64 for w, a in weights.items() if w not in depthwise)


def test_swish_models_keep_onnxruntimes_placement_on_avx2(tiny):
    """NNCF quantizes swish after its Sigmoid x Mul, which leaves every Conv's output float (3x slower on B0 in ONNX
    Runtime): B models keep ONNX Runtime's own quantizer with reduce_range."""
    assert not onnx_graph.activations_fold_into_grids(tiny["fp32"])

"""int8 that follows the board's arithmetic: the ISA is detected or declared, and the quantizer follows it."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edge.isa import detect, must_not_saturate
from pipeline import PipelineError
from pipeline.cli import main
from pipeline.config import QuantConfig, make_config
from targets import get_target
from targets.onnx import SATURATING_QUANTIZER as ONNX_SATURATING_QUANTIZER
from pipeline import emulation
from pipeline.ship.report import arithmetic_line

ZEN3 = "processor\t: 0\nflags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma bmi2\n"
ZEN4 = ZEN3.replace("bmi2", "bmi2 avx512f avx512bw avx512_vnni avx512_bf16")
PI4 = "processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
PI5 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\n"


def test_detect_reads_the_int8_instructions():
    assert detect(ZEN3, "x86_64") == "avx2"
    assert detect(ZEN4, "x86_64") == "avx512-vnni"
    assert detect(ZEN3.replace("bmi2", "bmi2 avx_vnni"), "x86_64") == "avx-vnni"
    assert detect(PI4, "aarch64") == "arm-neon" and detect(PI5, "aarch64") == "arm-dotprod"
    assert detect("", "riscv64") == "unknown"


def test_profiles_declare_their_boards_and_settings_are_checked():
    assert make_config("rpi", {}).board.isa == "arm-neon"
    assert make_config("jetson", {}).board.isa == "gpu"
    assert make_config("openvino", {}).board.isa == detect()  # deploying for this machine
    assert not hasattr(make_config("openvino", {}).quant, "isa")  # held once, by the board
    assert get_target("onnx").recipe(QuantConfig(), "avx2")["quantizer"] == ONNX_SATURATING_QUANTIZER
    assert get_target("onnx").recipe(QuantConfig(), "avx512-vnni")["quantizer"] == "ONNX Runtime's quantize_static"
    with pytest.raises(PipelineError, match="set board.isa instead"):
        make_config("openvino", {"quant.isa": "avx2"})  # would be overwritten by the board's
    with pytest.raises(PipelineError, match="unknown int8 ISA 'zen3'; use auto or one of avx512-vnni"):
        make_config("onnx", {"board.isa": "zen3"})


def _onnx_7bit_share(path) -> float:
    """Share of int8 weight tensors that use 7 bits at most; asserts the depthwise ones keep 8 bits."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2]  # not zero points
    peak = {t.name: int(np.abs(numpy_helper.to_array(t).astype(np.int32)).max()) for t in weights}
    depthwise = {t.name for t in weights if len(t.dims) == 4 and t.dims[1] == 1}
    assert depthwise and all(peak[w] > 64 for w in depthwise)  # MLAS sums depthwise products in 32 bits
    return float(np.mean([p <= 64 for w, p in peak.items() if w not in depthwise]))


def _ir_7bit_share(path) -> float:
    import openvino as ov

    model = ov.Core().read_model(str(path))
    peaks = [int(np.abs(op.get_data().astype(np.int32)).max()) for op in model.get_ops()
             if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8]
    return float(np.mean([p <= 64 for p in peaks]))


# OpenVINO in the default run; ONNX Runtime (~40 s) in make test-e2e
@pytest.mark.parametrize("target,measure", [pytest.param("onnx", _onnx_7bit_share, marks=pytest.mark.e2e), ("openvino", _ir_7bit_share)])
def test_forcing_the_other_cpu_kind_changes_the_recipe(target, measure, tiny_checkpoint, colour_data, deployed_tiny, tmp_path):
    """Deploying for an AVX2-only board from any host: 7-bit weights (headroom for 16-bit sums), said in the report.
    The host's own kind is the shared tiny deployment (board.isa auto-detected); the other kind is forced."""
    ranges, outs = {}, {}
    for board in ("avx2", "avx512-vnni"):
        if board == detect():
            outs[board] = out = deployed_tiny(target)
        else:
            outs[board] = out = tmp_path / board
            args = ["deploy", "--target", target, "--model", "b0", "--weights", str(tiny_checkpoint), "--data", str(colour_data),
                    "--image-size", "64", "--calib-size", "16", "--out", str(out), "--set", "runs=3", "--set", "warmup=1",
                    "--set", f"board.isa={board}", "--set", "quant.bias_correction=fast"]  # as deployed_tiny's
            assert main(args) == 0
        report = json.loads((out / "report.json").read_text())
        judged = emulation.choose(board).to_dict()  # the board's own CPU under QEMU where this host can emulate it
        validated_on = board if judged["kind"] == "emulated" else detect()
        assert report["int8_isa"]["made_for"] == board and report["int8_isa"]["validated_on"] == validated_on
        ranges[board] = measure(out / "int8" / ("model.onnx" if target == "onnx" else "model.xml"))
        md = (out / "report.md").read_text()
        assert f"int8 made for **{board}" in md
        # a VNNI board's 8-bit weights validated on an AVX2 host: with unsaturated sums, the board's answers; an AVX2
        # board from a VNNI host: on emulated Haswell where QEMU is installed, saturating as the board does
        assert report["int8_isa"]["judged_by"] == judged and arithmetic_line(judged) in md
        unsaturated = judged["kind"] == "unsaturated"
        assert unsaturated == must_not_saturate(board) == ("unsaturated int8 sums" in report["runtime"]["int8"])
        assert ("on emulated Haswell" in report["runtime"]["int8"]) == (judged["kind"] == "emulated")
        assert "unsaturated" not in report["runtime"]["float"] and "emulated" not in report["runtime"]["float"]
        assert json.loads((out / "bundle" / "config.json").read_text())["int8_isa"] == board
    # ONNX Runtime's reduce_range (b0's swish) narrows every weight but the depthwise; NNCF's overflow fix in the IR
    # the layers fed by u8 activations.
    assert ranges["avx512-vnni"] == 0 and ranges["avx2"] >= (1.0 if target == "onnx" else 0.25)
    recipe = json.loads((outs["avx2"] / "report.json").read_text())["int8_isa"]["recipe"]
    fix = ({"quantizer": ONNX_SATURATING_QUANTIZER, "weights": "7-bit; depthwise 8-bit (summed in 32 bits)"}
           if target == "onnx" else {"nncf.overflow_fix": "ENABLE", "activation_scales": "per-tensor"})
    assert recipe == {**fix, "bias_correction": "fast (NNCF)"}

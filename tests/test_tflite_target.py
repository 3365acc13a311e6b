"""TARGET=tflite / rpi with the real litert-torch converter, ai-edge-quantizer and the LiteRT interpreter."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("litert_torch", reason="TARGET=tflite needs pip install -e .[tflite] (make setup installs it)")
pytest.importorskip("ai_edge_quantizer", reason="TARGET=tflite needs pip install -e .[tflite]")

import targets  # noqa: E402
from pipeline.scores import agreement, parity  # noqa: E402

tflite = targets.get_target("tflite")


@pytest.fixture(scope="module")
def artifacts(tiny_arrays, target_artifacts):
    return {**tiny_arrays, **target_artifacts("tflite")}


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


def test_runtime_label_says_which_kernels_ran(artifacts):
    """XNNPACK is named only when its delegate took the graph: without it (as when LiteRT cannot read
    the CPU) the label says built-in kernels. The CPU features are this machine's."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edge.isa import features
    from edge.runners import litert_kernels

    label = tflite.runner(artifacts["int8"]).runtime
    assert "(CPU, XNNPACK; " in label and label.endswith(" ".join(features()) + ")") and features(), label
    plain = Interpreter(model_path=str(artifacts["int8"]), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    plain.allocate_tensors()
    assert litert_kernels(plain) == "built-in kernels, XNNPACK not applied"


def test_cpu_features_come_from_cpuinfo():
    from edge.isa import features

    pi5 = "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\n"
    assert features(pi5) == ["asimd", "asimdhp", "asimddp"]
    assert features("flags\t: fpu sse2 avx2 fma avx512f avx512_vnni\n") == ["avx2", "fma", "avx512f", "avx512_vnni"]


def test_int8_tflite_agrees_on_a_model_that_learnt_something(artifacts):
    logits = tflite.runner(artifacts["int8"]).infer(artifacts["test"])
    assert agreement(logits, artifacts["ref"]) >= 0.85


def test_layer_errors_point_at_layers(artifacts):
    batch = artifacts["calib"][:2]
    same = tflite.layer_errors(artifacts["fp32"], artifacts["fp32"], batch, worst=5)
    assert len(same) == 5 and all(r["relative_error"] == 0 for r in same)  # a graph against itself: no error
    rows = tflite.layer_errors(artifacts["fp32"], artifacts["int8"], batch, worst=5)
    assert len(rows) == 5 and all(1e-4 < r["relative_error"] < 1 for r in rows), rows  # int8 rounding, not garbage
    assert [r["index"] for r in rows] == sorted(r["index"] for r in rows)  # graph order
    everything = tflite.layer_errors(artifacts["fp32"], artifacts["int8"], batch, worst=1000)
    assert min(r["relative_error"] for r in rows) >= max(sorted(r["relative_error"] for r in everything)[:-5])  # the worst five


@pytest.mark.e2e  # ~60 s (a deploy, LiteRT's converter twice); make test-arm runs the rpi bundle on real Arm binaries
def test_rpi_bundle_runs_on_litert_without_torch(deployed_tiny, colour_data, tmp_path):
    """The shared tiny rpi deployment (NNCF's fast bias correction: the full one is tested in test_deploy)."""
    import json
    import os
    import subprocess

    from board import board_venv

    out = deployed_tiny("rpi")
    report = json.loads((out / "report.json").read_text())
    assert report["int8_ops"]["full_integer"] and report["runtime"]["int8"].startswith("litert")
    # the board's 4 threads go in the bundle; the host times with no more threads than it has
    assert report["runtime"]["threads"] == min(4, os.cpu_count()) and report["layer_errors"]
    config = json.loads((out / "bundle" / "config.json").read_text())
    assert config["runtime"] == "litert" and config["threads"] == 4 and config["camera"]["source"] == "/dev/video0"
    reqs = (out / "bundle" / "requirements.txt").read_text()
    assert "ai-edge-litert" in reqs and "torch" not in reqs
    env = {**os.environ, "PYTHON": str(board_venv())}
    r = subprocess.run([str(out / "bundle" / "run.sh"), "validate", "--data", str(colour_data), "--runs", "3",
                        "--out", str(tmp_path / "v")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    board = json.loads((tmp_path / "v" / "report.json").read_text())
    assert board["accuracy"]["int8"] == report["accuracy"]["int8"] and board["runtime"]["int8"].startswith("litert")

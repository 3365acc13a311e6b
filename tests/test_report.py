"""The gate's verdict and reasons, one by one."""
from __future__ import annotations

from pipeline.config import DeployConfig
from pipeline.ship.report import gate


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


def _rendered(target: str, runtime: dict, made_for: str, host_isa: str = "avx2", cores: int = 2) -> tuple[dict, str]:
    """A prepared host report (the keys markdown reads) for `target`, its latency measured as `runtime` says, and its report.md."""
    from edge.metrics import fidelity
    from edge.report import accuracy_block, core, judge
    from pipeline.emulation import choose
    from pipeline.ship.report import latency_measured, markdown
    from targets import get_target

    top = {"top1": 0.8, "top5": 0.95}
    lat = {"p50": 79.0, "p90": 80.0, "p99": 81.0, "mean": 79.5, "runs": 20, "throughput_fps": 12.6}
    r = core(model="b0", target=target, quant="int8-ptq", judged=judge(fidelity(_validation()["paired"], 990, 1000, 1.0), [], False), artifact="int8.onnx",
             accuracy=accuracy_block(float_=top, float_artifact=top, int8=top, agreement=0.99, images=100, skipped=0,
                                     skipped_files=[], max_drop=1.0),
             latency=lat, float_latency={**lat, "p50": 28.0}, runtime=runtime, size_mb={"float": 20.0, "int8": 5.0},
             calibration={"count": 32, "source": "calib", "random": False},
             int8_isa={"made_for": made_for, "validated_on": host_isa, "recipe": None,
                       "judged_by": choose(made_for, "off", host_isa).to_dict()})
    r |= {"weights": "w.pt", "data": {"folder": "val", "embedded_sample": False},
          "float_parity": {"top1_agreement": 1.0, "max_abs_diff": 1e-5, "relative_diff": 1e-6},
          "int8_ops": {"compute_ops_int8_input": 80, "compute_ops": 81, "int8_macs_share": 0.99},
          "executed_precisions": None, "layer_errors": None,
          "latency_measured": latency_measured(get_target(target), runtime, made_for, host_isa, cores)}
    return r, markdown(r, 3)


def test_a_boards_latency_measured_on_the_host_is_labelled_the_hosts():
    """Jetson: the host's ONNX Runtime CPU times (int8 79 ms, float 28 ms) are not TensorRT's on the Jetson, and say so."""
    ort = {"int8": "onnxruntime 1.32.0 (CPU) as the int8 reference; TensorRT engine not built on this host",
           "float": "onnxruntime 1.32.0 (CPU) as the float reference", "threads": 2}
    r, md = _rendered("jetson", ort, "gpu")
    m = r["latency_measured"]
    assert not m["on_board"] and m["threads"] == 2 and m["board_runtime"] == "tensorrt"
    assert "latency on this host (onnxruntime 1.32.0 (CPU), 2 threads), not the jetson board's: run ./run.sh validate" in md
    assert "**Mind the latency columns: latency on this host (onnxruntime" in md
    assert "this host ran onnxruntime, not the board's tensorrt: neither these times nor the int8/float ratio" in md


def test_threads_beyond_the_hosts_cores_are_not_claimed():
    """rpi: 4 XNNPACK threads asked on a 2-core host run 2 at a time; the Pi's runtime, but not the Pi's CPU."""
    r, md = _rendered("rpi", {"int8": "litert 2.3.0 (CPU, XNNPACK)", "float": "litert 2.3.0 (CPU, XNNPACK)", "threads": 4}, "arm-neon")
    m = r["latency_measured"]
    assert m["threads"] == 2 and m["threads_asked"] == 4 and m["note"] is None and not m["on_board"]
    assert "(litert 2.3.0 (CPU, XNNPACK), 2 threads; 4 asked for, this host has 2 cores), not the rpi board's" in md
    assert "4 threads" not in md


def test_latency_on_the_board_itself_carries_no_warning(tmp_path):
    """OpenVINO made for this host's own ISA and run in OpenVINO: the host is the board; the plot says whose latency."""
    from pipeline.ship.report import _plot, _plot_latency_words

    r, md = _rendered("openvino", {"int8": "openvino 2026.4.1 (CPU, f32)", "float": "openvino 2026.4.1 (CPU, f32)", "threads": 2},
                      "avx2")
    assert r["latency_measured"]["on_board"] and "not the" not in md and "latency columns" not in md
    assert _plot_latency_words(r["latency_measured"]) == ("latency on this host\n(openvino 2026.4.1 (CPU, f32), 2 threads)", "")
    jetson, _ = _rendered("jetson", {"int8": "onnxruntime 1.32.0 (CPU) as the int8 reference", "float": "onnxruntime 1.32.0 (CPU)",
                                    "threads": 16}, "gpu")
    title, caption = _plot_latency_words(jetson["latency_measured"])
    assert "2 threads" in title and caption == "not the jetson board's (tensorrt): run ./run.sh validate there"
    lat = {"p50": 79.0, "p99": 81.0}
    _plot(jetson, {"latency_ms": {"float": {**lat, "p50": 28.0}, "int8": lat}}, tmp_path / "latency.png")
    assert (tmp_path / "latency.png").stat().st_size > 1000

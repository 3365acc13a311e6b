"""`make bench` end to end at its smallest: every section is measured and written (no timing assertions)."""
from __future__ import annotations

import json

import pytest

from pipeline.bench import BenchConfig, interleaved_latency, run_bench
from pipeline.bench.camera import expected_ratio


def test_interleaving_times_every_engine_alike():
    calls = []
    engines = {name: (name, lambda x, n=name: calls.append(n)) for name in ("a", "b", "c")}
    result = interleaved_latency(engines, None, warmup=2, runs=30, block=5)
    assert all(result[n]["runs"] == 30 for n in engines)
    # Rotating order: each engine opens a round at least once.
    openers = [calls[6 + i * 18] for i in range(6)]
    assert set(openers) == {"a", "b", "c"}


def test_the_expected_camera_ratio_counts_the_capture_work_against_busy_or_idle_cores():
    work = {"capture_ms": 0.5, "preprocess_ms": 1.5}  # 2 ms per frame on the capture thread
    assert expected_ratio(125, work) == pytest.approx(8 / 10)  # 8 ms inference on every core: the 2 ms come out of it
    assert expected_ratio(125, work, idle_cores=1) == 1.0  # an idle core takes the 2 ms alongside the 8
    assert expected_ratio(1000, work, idle_cores=1) == pytest.approx(1 / 2)  # 1 ms inference: capture is the bottleneck
    assert expected_ratio(125, {"capture_ms": 0.0, "preprocess_ms": 0.0}, idle_cores=1) == 1.0


@pytest.mark.e2e  # ~100 s: make bench is the benchmark's own check; make test-e2e runs this one
def test_bench_writes_tables_and_plots(tmp_path):
    bc = BenchConfig(models=("lite0",), out=str(tmp_path / "bench"), quick=True, runs=20, warmup=2,
                     vendor_rounds=2, vendor_seconds=0.3, scaling_budget_s=0, camera_frames=40)
    results = run_bench(bc)
    out = tmp_path / "bench"
    saved = json.loads((out / "results.json").read_text())
    assert saved["machine"]["cpu"] and saved["machine"]["versions"]["openvino"] and saved["machine"]["threads"] >= 1
    lite = saved["models"]["lite0"]
    engines = set(lite["latency_ms"])
    assert {"pytorch fp32", "openvino fp32", "openvino int8", "onnxruntime fp32", "onnxruntime int8"} <= engines
    from pipeline.bench import bench_targets

    if "tflite" in bench_targets():
        assert {"litert fp32", "litert int8"} <= engines and lite["accuracy"]["tflite"]["images"] == 3
    for row in lite["latency_ms"].values():
        assert row["runs"] == 20 and 0 < row["p50"] < 5000 and row["speedup_vs_pytorch"] > 0
    assert "f32" in lite["latency_ms"]["openvino fp32"]["runtime"]
    paired = lite["latency_ms"]["openvino int8"]["speedup_vs_own_fp32_paired"]
    assert paired["rounds"] == 2 and paired["range"][0] <= paired["ratio"] <= paired["range"][1]
    assert "speedup_vs_own_fp32_paired" not in lite["latency_ms"]["openvino fp32"]
    tools = lite["vendor_tools"]
    assert tools["openvino int8"]["tool"] == "benchmark_app" and tools["openvino int8"]["theirs_median_ms"] > 0
    assert isinstance(tools["openvino fp32"]["wrapper_ms"], float)  # ours minus the bare call: noise can make it negative
    assert tools["onnxruntime int8"]["tool"] is None and "onnxruntime_perf_test" in tools["onnxruntime int8"]["why"]
    if "tflite" in bench_targets():
        assert tools["litert int8"]["tool"] == "litert-benchmark" and tools["litert int8"]["theirs_median_ms"] > 0
        assert tools["litert int8"]["input"] == "pixels" and tools["openvino int8"]["input"] == "pixels"  # as the camera feeds them
    for runtime in ("onnxruntime", "openvino"):  # op kinds from the runtimes' own counters, adding up to the run
        prof = lite["op_profile"][runtime]
        assert prof["int8_over_fp32"] > 0 and prof["convolution_ms"]["int8"] > 0
        assert sum(prof["ops_ms"]["int8"].values()) == pytest.approx(prof["total_ms"]["int8"])
        assert prof["bound_if_int8_rest_were_free"] >= prof["bound_if_int8_rest_cost_fp32s"]
    assert any(op.startswith("QLinearConv") or op.startswith("NhwcQLinearConv") for op in lite["op_profile"]["onnxruntime"]["ops_ms"]["int8"])
    assert any(op.endswith(" I8") or op.endswith(" i8") for op in lite["op_profile"]["openvino"]["ops_ms"]["int8"])
    # Three photos cannot pin int8 down on every CPU (a near-tie flips with the int8 arithmetic): the
    # table holds a measured fraction, and float, which is the same everywhere, gets every photo right.
    assert lite["accuracy"]["openvino"]["images"] == 3 and 0 <= lite["accuracy"]["onnx"]["int8_top1"] <= 1
    assert lite["accuracy"]["onnx"]["float_top1"] == 1.0
    cam = lite["camera_loop"]
    assert cam["shadow"]["1 in 10"]["classified"] == 40 and cam["shadow"]["1 in 1"]["shadowed"] >= 1
    spare = [name for name in cam["modes"] if "a core left for capture" in name]  # inference on one thread fewer
    assert len(spare) == (2 if cam["threads"] > 1 else 0) and len(cam["modes"]) == 4 + len(spare)
    assert all(row["classified"] == 40 and row["camera_over_bare"] > 0 for row in cam["modes"].values())
    for name, row in cam["modes"].items():  # each ratio against the bare rate measured just before and after its own run
        before, after = row["bare_before_after_fps"]
        assert before > 0 and after > 0 and row["camera_over_bare"] == row["fps"] / ((before + after) / 2)
        work = row["capture_work"]  # the capture thread's work alone, and the ratio it leads to expect
        assert work["frames"] == 40 and work["capture_ms"] > 0 and work["preprocess_ms"] > 0 and row["capture_ms"]["p50"] > 0
        idle = name in spare or (name.endswith("latency") and cam["cpus"] > cam["threads"])
        assert row["expected_ratio"] == expected_ratio(row["bare_inference_fps"], work, int(idle))
        rounds = row["rounds_camera_over_expected"]  # the median round of three, by camera ÷ expected
        assert len(rounds) == 3 and row["camera_over_expected"] == sorted(rounds)[1]
        assert row["camera_over_expected"] == row["camera_over_bare"] / row["expected_ratio"]
    assert cam["every frame"]["classified"] == 40 and cam["bare_inference_fps"] > 0 and cam["live at 30 fps"]["classified"] > 0
    assert [s["model"] for s in saved["scaling"]] == ["b0"]
    md = (out / "README.md").read_text()
    for heading in ("## Latency", "paired rounds", "benchmark_app", "litert-benchmark", "No tool for onnxruntime", "## Where the time goes", "raw (CSI camera), throughput", "Camera ÷ expected", "## Accuracy", "## Camera loop", "## Pipeline cost", "## Scaling"):
        assert heading in md
    for png in ("latency.png", "accuracy.png", "scaling.png"):
        assert (out / png).stat().st_size > 1000
    assert results["models"]["lite0"]["weights"] == "pretrained"


@pytest.mark.e2e  # ~40 s: a Lite0 deploy, then 3 windows
def test_sustained_bench_writes_its_report_and_plot(tmp_path):
    """make bench SUSTAINED=N: the first model's int8 back to back, a row per window, the verdict, JSON, Markdown, plot."""
    from pipeline.cli import main

    assert main(["bench", "--models", "lite0", "--sustained", str(3 / 60), "--window", "1", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "sustained.json").read_text())
    assert len(result["windows"]) == 3 and result["model"] == "lite0"
    md = (tmp_path / "sustained.md").read_text()
    assert result["verdict"] in md and "| window | to s | p50 ms | p99 ms |" in md and "sustained.png" in md
    assert (tmp_path / "sustained.png").stat().st_size > 5000


def test_a_camera_row_is_its_median_round_and_the_report_names_the_rows_under_the_floor():
    from pipeline.bench.camera import median_round
    from pipeline.bench.report import _rows_under

    work = {"capture_ms": 1.0, "preprocess_ms": 1.0}  # 2 ms against 8 ms inference (125/s): 0.8 expected on busy cores
    runs = iter([{"bare_inference_fps": 125.0, "camera_over_bare": ratio, "fps": 125 * ratio} for ratio in (0.76, 0.6, 0.8)])
    row = median_round(3, lambda: next(runs), work, idle_cores=0)
    assert row["expected_ratio"] == pytest.approx(0.8) and row["camera_over_bare"] == 0.76
    assert row["camera_over_expected"] == pytest.approx(0.95) and row["rounds_camera_over_expected"] == pytest.approx([0.95, 0.75, 1.0])
    r = {"models": {"b0": {"camera_loop": {"modes": {"raw, latency": row, "raw, throughput": row | {"camera_over_expected": 0.75}}}}}}
    assert _rows_under(r, 0.9) == "**Camera ÷ expected under 0.9 in 1 row:** b0 raw, throughput (0.75)."
    assert _rows_under(r, 0.7).startswith("**Camera ÷ expected: at least 0.7 in every row")


def test_the_cost_split_rebuilds_b0_without_swish_or_squeeze_excite_keeping_its_weights():
    import torch
    from torch import nn
    from torchvision.ops.misc import SqueezeExcitation

    from pipeline.bench.cost_split import VARIANTS, rebuilt
    from pipeline.model.family import get_spec
    from pipeline.model.load import build

    b0 = build(get_spec("b0"), 10).eval()
    stem = b0.features[0][0].weight
    for variant in VARIANTS:
        model = rebuilt(b0, variant)
        kinds = {type(m) for m in model.modules()}
        assert (nn.SiLU in kinds) != variant.relu6_for_swish and (nn.ReLU6 in kinds) == variant.relu6_for_swish
        assert (SqueezeExcitation in kinds) != variant.without_squeeze_excite
        assert torch.equal(model.features[0][0].weight, stem) and model.features[0][0].weight is not stem  # a copy
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 10)
    assert [v.is_b0 for v in VARIANTS] == [True, False, False, False]  # only the first is the bench's B0 itself
    assert nn.SiLU in {type(m) for m in b0.modules()}  # the bench's own B0 is left as it was


def test_the_cost_split_table_reads_each_variant_against_lite0():
    from pipeline.bench.report import _b0_cost_split

    r = {"config": {"threads": 2, "vendor_rounds": 3, "vendor_seconds": 1.0},
         "b0_cost_split": {"openvino": {"b0": {"int8_time_over_lite0_int8": {"ratio": 2.1, "range": [2.0, 2.2], "rounds": 3}}}}}
    md = "\n".join(_b0_cost_split(r))
    assert "| openvino | b0 | 2.10 (2.00-2.20) |" in md and "3 turns of about 1 s" in md
    assert _b0_cost_split({"config": {}}) == []  # a bench without lite0 and b0 has no such section


def test_the_quick_bench_keeps_five_rounds_each_shorter():
    quick = BenchConfig(quick=True).effective()
    assert quick.vendor_rounds == BenchConfig().vendor_rounds == 5 and quick.vendor_seconds == 1.0


@pytest.mark.e2e  # ~50 s: lite0 and b0 deployed to OpenVINO, b0 rebuilt three ways and quantized
def test_the_cost_split_times_every_variant_against_lite0s_int8(tmp_path):
    import openvino

    from pipeline.bench.cost_split import VARIANTS, cost_split
    from pipeline.bench.run import deploy_model

    bc = BenchConfig(out=str(tmp_path / "bench"), quick=True).effective()
    deployed = {m: {"openvino": deploy_model(m, "openvino", bc, "random", False, lambda *a: None)} for m in ("lite0", "b0")}
    split = cost_split(deployed["b0"], deployed["lite0"], 0, 2, 0.2, tmp_path / "split", print, targets=("openvino",))
    rows = split["openvino"]
    assert list(rows) == [v.name for v in VARIANTS]
    assert all(row["int8_time_over_lite0_int8"]["rounds"] == 2 for row in rows.values())
    irs = {f.parent.name: {op.get_type_name() for op in openvino.Core().read_model(str(f)).get_ops()}
           for f in (tmp_path / "split").glob("openvino-*/int8.xml")}
    assert set(irs) == {"openvino-01", "openvino-10", "openvino-11"}  # B0 itself is the bench's own IR
    swish = {"Sigmoid", "Swish"}  # as the converter spells x * sigmoid(x)
    assert all("FakeQuantize" in ops for ops in irs.values())  # each variant quantized
    assert swish & irs["openvino-01"] and "Clamp" not in irs["openvino-01"]  # swish kept, squeeze-excite gone
    assert "Sigmoid" in irs["openvino-10"] and "Clamp" in irs["openvino-10"]  # ReLU6 (Clamp), squeeze-excite's gate kept
    assert not swish & irs["openvino-11"] and "Clamp" in irs["openvino-11"]  # Lite0's ops

"""The gate judges int8 in the board's own arithmetic where this host can emulate the board's CPU (QEMU user mode),
and says which arithmetic judged it."""
from __future__ import annotations

import json
import subprocess

import pytest

from conftest import TINY_SIZE
from edge import isa
from pipeline import PipelineError
from pipeline import emulation
from pipeline.config import make_config

needs_qemu = pytest.mark.skipif(emulation.qemu_x86() is None, reason=f"no qemu-x86_64: {emulation.QEMU_X86_FIX}")


def test_the_isa_is_what_cpuid_says_where_an_emulator_hides_cpuinfo_features():
    """Under QEMU user mode /proc/cpuinfo is the host's; CPUID (which numpy reads, as the runtimes do) is the
    emulated CPU's. Where CPUID denies a feature cpuinfo lists, CPUID alone counts."""
    zen5 = {"sse4_2", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni"}
    haswell = {"SSE42": True, "AVX2": True, "FMA3": True, "AVX512F": False, "AVX512VNNI": False}
    seen = isa.as_cpuid_sees(zen5, haswell)
    assert seen == {"sse4_2", "avx2", "fma"} and isa.detect(isa._flags_text(seen), "x86_64") == "avx2"
    native = {**haswell, "AVX512F": True, "AVX512VNNI": True}
    assert isa.as_cpuid_sees(zen5, native) == zen5  # nothing denied: cpuinfo's avx_vnni, which numpy cannot name, stays
    assert isa.as_cpuid_sees(zen5, {}) == zen5  # a numpy that says nothing
    nehalem = {"SSE42": True, "AVX2": False}
    assert isa.detect(isa._flags_text(isa.as_cpuid_sees(zen5, nehalem)), "x86_64") == "sse4.2"


@needs_qemu
@pytest.mark.parametrize("cpu,expected", [("Haswell", "avx2"), ("Nehalem", "sse4.2")])
def test_a_python_on_an_emulated_cpu_detects_that_cpu(cpu, expected):
    out = subprocess.run([*emulation.x86_python(cpu), "-c", "from edge.isa import detect; print(detect())"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == expected


@pytest.mark.parametrize("board,host,emulate,kind,cpu", [
    ("avx2", "avx512-vnni", "auto", "emulated", "Haswell"),
    ("sse4.2", "avx2", "auto", "emulated", "Nehalem"),
    ("avx2", "avx512-vnni", "off", "host", None),
    ("avx2", "avx2", "auto", "host", None),
    ("avx512-vnni", "avx2", "auto", "unsaturated", None),  # QEMU cannot model AVX-512: unsaturated sums stand in
    ("gpu", "avx512-vnni", "auto", "unsaturated", None),  # TensorRT: ONNX Runtime with Q/DQ unfused
    ("arm-dotprod", "avx512-vnni", "auto", "host", None),  # Arm needs root and minutes: only with emulate=on
])
def test_which_arithmetic_judges_int8(board, host, emulate, kind, cpu, monkeypatch):
    monkeypatch.setattr(emulation, "qemu_x86", lambda: "/usr/bin/qemu-x86_64")  # as if installed
    a = emulation.choose(board, emulate, host)
    assert (a.kind, a.cpu) == (kind, cpu)
    assert a.to_dict()["description"] == a.describe() and (cpu or host) in a.describe()


def test_emulation_that_cannot_run_is_one_line_before_any_model_work(monkeypatch):
    with pytest.raises(PipelineError, match="unknown board.emulate='sometimes'"):
        make_config("openvino", {"board.emulate": "sometimes"})
    with pytest.raises(PipelineError, match="cannot model a gpu board"):
        make_config("jetson", {"board.emulate": "on"})
    monkeypatch.setattr(emulation, "qemu_x86", lambda: None)
    with pytest.raises(PipelineError, match="apt install qemu-user"):
        make_config("openvino", {"board.isa": "avx2", "board.emulate": "on"})
    # auto goes on without it and says so
    note = emulation.choose("avx2", "auto", "avx512-vnni").note
    assert "qemu-x86_64 is not installed" in note and "apt install qemu-user" in note


@pytest.mark.emulated
@needs_qemu
def test_an_emulated_haswell_sees_the_saturation_this_host_may_not(tmp_path):
    """The u8 255 x s8 127 layer (tests/test_exact_int8.py): on emulated Haswell, ONNX Runtime's fused kernel saturates
    as an AVX2 board's does, whatever CPU runs the test; the runner's label names the CPU."""
    from edge.runners.emulated import EmulatedRunner
    from test_exact_int8 import EXACT, PIXELS, _onnx_qdq

    model = _onnx_qdq(tmp_path / "layer.onnx")
    board = EmulatedRunner(emulation.x86_python("Haswell"), "Haswell", "onnxruntime", model)
    assert board.isa == "avx2" and "on emulated Haswell (avx2)" in board.runtime
    assert float(board.infer(PIXELS).mean()) < 0.6 * EXACT
    board.close()
    with pytest.raises(PipelineError, match="on the emulated Haswell: .*missing.onnx"):
        EmulatedRunner(emulation.x86_python("Haswell"), "Haswell", "onnxruntime", tmp_path / "missing.onnx")


@pytest.mark.emulated
@needs_qemu
def test_deploy_for_an_older_x86_board_is_judged_on_its_emulated_cpu(tiny_checkpoint, colour_data, tmp_path):
    """board.isa=sse4.2 can be emulated from any x86 host (Nehalem): validation runs the int8 IR there, latency here,
    and the report names the arithmetic."""
    from pipeline.cli import main

    out = tmp_path / "run"
    args = ["deploy", "--target", "openvino", "--model", "b0", "--weights", str(tiny_checkpoint), "--data", str(colour_data),
            "--image-size", str(TINY_SIZE), "--calib-size", "8", "--out", str(out), "--set", "runs=3", "--set", "warmup=1",
            "--set", "max_images=12", "--set", "quant.bias_correction=fast", "--set", "board.isa=sse4.2"]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    judged = report["int8_isa"]["judged_by"]
    assert judged["kind"] == "emulated" and judged["cpu"] == "Nehalem" and report["int8_isa"]["validated_on"] == "sse4.2"
    assert report["runtime"]["int8"].endswith("on emulated Nehalem (sse4.2)") and "emulated" not in report["runtime"]["float"]
    assert report["accuracy"]["images"] == 12 and report["accuracy"]["top1_agreement"] >= 0.75
    md = (out / "report.md").read_text()
    assert "int8 judged in: the board's: sse4.2 emulated by QEMU as Nehalem" in md and "validated on an emulated" in md
    assert report["latency_measured"]["host"]  # timed here, not under the emulator

"""`make choose`: the most accurate EfficientNet whose int8 p99 fits a latency budget, timed in the target's runtime.

Two pretrained Lite models at 64 px on OpenVINO keep it quick; budgets come from what the first run measured
(never an absolute time), and later runs reuse its cached measurements.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from board import board_venv, free_port
from pipeline.cli import main
from test_make_targets import _after, _argv
from test_mqtt_push import sshd  # noqa: F401  (the real sshd on loopback, a fixture)

# Given out of order on purpose: the chooser sorts by cost. Bias correction off and 8 calibration photos: speed.
QUICK = ["--target", "openvino", "--models", "lite1,lite0", "--image-size", "64", "--calib-size", "8",
         "--runs", "20", "--warmup", "3", "--set", "quant.bias_correction=off"]


def choose(out: Path, budget, *extra: str) -> int:
    return main(["choose", *QUICK, "--out", str(out), "--budget-ms", str(budget), *extra])


def read(out: Path) -> dict:
    return json.loads((out / "choose.json").read_text())


def by_model(result: dict) -> dict:
    return {r["model"]: r for r in result["candidates"]}


def p99(row: dict) -> float:
    return row["latency_ms"]["p99"]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("choose") / "choose"
    assert choose(out, 1e6) == 0  # everything fits: the most accurate wins
    return out, read(out)


def test_a_generous_budget_picks_the_most_accurate_and_writes_the_reports(first_run, capsys):
    out, result = first_run
    assert [r["model"] for r in result["candidates"]] == ["lite0", "lite1"]  # cheapest (MACs) first
    assert result["choice"] == "lite1" and result["next_larger"] is None
    for r in result["candidates"]:
        assert r["status"] == "measured" and not r["cached"] and r["accuracy_source"] == "published ImageNet top-1"
        assert 0 < r["latency_ms"]["p50"] <= p99(r) and r["image_size"] == 64
    assert result["deploy_command"] == ("make deploy TARGET=openvino MODEL=lite1 IMAGE_SIZE=64 CALIB_SIZE=8 "
                                        "SET=quant.bias_correction=off")
    md = (out / "choose.md").read_text()
    assert "**Choice: lite1**" in md and result["deploy_command"] in md and "64 px" in md
    assert (out / "choose.png").read_bytes()[:4] == b"\x89PNG"


def test_a_budget_between_two_candidates_picks_the_one_that_fits_without_measuring_again(first_run, capsys):
    out, first = first_run
    fast, slow = sorted(first["candidates"], key=p99)
    budget = (p99(fast) + p99(slow)) / 2
    capsys.readouterr()
    assert choose(out, budget) == 0
    result = read(out)
    rows = by_model(result)
    chosen = rows[result["choice"]]
    assert p99(chosen) <= budget
    assert all(p99(r) > budget for r in result["candidates"] if r["accuracy"] > chosen["accuracy"])
    if result["next_larger"]:  # lite0 chosen: lite1, the next larger, is over the budget (and on the plot)
        assert p99(rows[result["next_larger"]]) > budget
    # cached by content: nothing timed again, the same figures
    assert result["measured"] == 0 and all(r["cached"] for r in result["candidates"])
    assert [r["latency_ms"] for r in result["candidates"]] == [r["latency_ms"] for r in first["candidates"]]
    assert capsys.readouterr().out.strip().splitlines()[-1] == result["deploy_command"]


def test_nothing_fits_is_one_line_and_larger_candidates_are_not_measured(first_run, capsys):
    out, first = first_run
    lite0 = by_model(first)["lite0"]
    budget = lite0["latency_ms"]["p50"] / 10  # lite0 is over 1.5x this, so lite1 is never timed
    capsys.readouterr()
    assert choose(out, budget) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: nothing fits BUDGET_MS=")
    assert f"the fastest candidate, lite0, took p99 {p99(lite0):.2f} ms" in err[0]
    result = read(out)
    assert result["choice"] is None
    assert by_model(result)["lite1"]["status"].startswith("not measured: larger than lite0")


@pytest.mark.parametrize("args, line", [
    (["--budget-ms", "fast"], "error: BUDGET_MS='fast' is not a number of milliseconds"),
    (["--budget-ms", "-5"], "error: BUDGET_MS=-5.0 must be a positive number of milliseconds"),
    (["--budget-ms", "nan"], "error: BUDGET_MS=nan must be a positive number"),
    ([], "error: BUDGET_MS is required"),
    (["--budget-ms", "20", "--models", "lite0,b9"], "error: MODELS: unknown model 'b9'; valid models: b0, b1"),
    (["--budget-ms", "20", "--target", "coral"], "error: unknown target 'coral'; valid targets:"),
    (["--budget-ms", "20", "--set", "quant.preset=fastest"], "error: unknown quant.preset='fastest'"),
])
def test_bad_inputs_are_one_line_before_any_work(args, line, tmp_path, capsys):
    out = tmp_path / "choose"
    assert main(["choose", "--models", "lite0", "--out", str(out), *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(line), err
    assert not out.exists()


def test_an_unreachable_device_is_one_line_before_any_work(tmp_path, capsys):
    out, port = tmp_path / "choose", free_port()  # nothing listens there
    rc = main(["choose", "--models", "lite0", "--budget-ms", "20", "--out", str(out), "--device", "root@127.0.0.1",
               "--ssh-port", str(port), "--ssh-known-hosts", str(tmp_path / "known_hosts")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1, err
    assert err[0].startswith(f"error: ssh to root@127.0.0.1 port {port} failed") and "check DEVICE" in err[0]
    assert not out.exists()


def test_make_choose_passes_each_value_as_one_argument(tmp_path):
    odd = "/data/my set/it's \"val\""
    argv = _argv(tmp_path, "choose", "TARGET=onnx", "BUDGET_MS=12.5", "MODELS=lite0,b0", f"DATA={odd}", f"OUT={odd}",
                 "IMAGE_SIZE=96", "SET=runs=20 quant.preset=performance", "DEVICE=me@board", f"SSH_KEY={odd}", "DEVICE_INSTALL=1")
    assert argv[:3] == ["-m", "pipeline", "choose"]
    assert _after(argv, "--target") == ["onnx"] and _after(argv, "--budget-ms") == ["12.5"]
    assert _after(argv, "--models") == ["lite0,b0"] and _after(argv, "--image-size") == ["96"]
    for flag in ("--data", "--out", "--ssh-key"):
        assert _after(argv, flag) == [odd], flag
    assert _after(argv, "--set") == ["runs=20", "quant.preset=performance"] and _after(argv, "--device") == ["me@board"]
    assert "--device-install" in argv


@pytest.mark.e2e
def test_with_a_device_each_bundle_times_itself_on_the_board(sshd, tmp_path):  # noqa: F811
    """The bundle is pushed over a real sshd and timed there by its own `./run.sh latency`, in a Python without PyTorch."""
    board = Path(sshd.dest)
    (board / ".venv" / "bin").mkdir(parents=True)  # the bundle's .venv, as DEVICE_INSTALL=1 makes it: the board's packages only
    (board / ".venv" / "bin" / "python").write_text(f'#!/bin/sh\nexec {board_venv()} "$@"\n')
    os.chmod(board / ".venv" / "bin" / "python", 0o755)
    out = tmp_path / "choose"
    device = ["--device", sshd.address, "--ssh-port", str(sshd.port), "--ssh-key", sshd.key,
              "--ssh-known-hosts", sshd.known_hosts, "--device-dir", sshd.dest]
    args = [a if a != "lite1,lite0" else "lite0" for a in QUICK]
    assert main(["choose", *args, "--out", str(out), "--budget-ms", "1e6", *device]) == 0
    result = read(out)
    row = by_model(result)["lite0"]
    assert row["where"].startswith(f"board {sshd.address}") and row["runtime"].lower().startswith("openvino")
    assert 0 < row["latency_ms"]["p50"] <= p99(row) and row["latency_ms"]["runs"] == 20
    assert result["choice"] == "lite0" and result["deploy_command"].endswith(f"DEVICE={sshd.address}")
    assert (board / "run.sh").is_file()
    assert main(["choose", *args, "--out", str(out), "--budget-ms", "1e6", *device]) == 0
    assert read(out)["candidates"][0]["cached"]  # the same bundle on the same board: not timed again

"""Issue 17: each mistake a new user makes is one line naming the fix (exit 1), before any model work,
and the run folder already there is left exactly as it was."""
from __future__ import annotations

import pytest

from pipeline.cli import main


def snapshot(folder) -> dict:
    """Every path under `folder` with its bytes and modification time: what "unchanged" means here."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


@pytest.fixture
def run_folder(colour_data, tmp_path):
    """A run folder with a finished stage in it (calibration: no model work, so it is cheap to make)."""
    out = tmp_path / "run"
    assert main(["calibration", "--model", "b0", "--data", str(colour_data), "--image-size", "64", "--calib-size", "4",
                 "--out", str(out)]) == 0
    assert (out / "calibration" / "calibration.npy").exists()
    return out


def one_line_error(args: list[str], run_folder, capsys) -> str:
    """Run a bad command against `run_folder`: exit 1, one line on stderr, the folder untouched; the line."""
    before = snapshot(run_folder)
    capsys.readouterr()
    assert main([*args, "--out", str(run_folder)]) == 1, args
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert not any(line.startswith("[") for line in captured.out.splitlines()), captured.out  # no stage started
    assert snapshot(run_folder) == before
    return err


@pytest.mark.parametrize("target", ["onnx", "tflite", "jetson"])
def test_a_preset_no_quantizer_here_reads_is_still_refused(target, run_folder, capsys):
    """quant.preset is NNCF's; ONNX Runtime's and LiteRT's paths never read it, and it was accepted there."""
    err = one_line_error(["deploy", "--target", target, "--model", "b0", "--set", "quant.preset=accurate"], run_folder, capsys)
    assert "unknown quant.preset='accurate'; use one of auto, mixed, performance" in err


def test_an_onnx_only_setting_is_refused_on_openvino(run_folder, capsys):
    err = one_line_error(["deploy", "--target", "openvino", "--set", "quant.ort_calibration=kl"], run_folder, capsys)
    assert "quant.ort_calibration='kl'" in err and "MinMax" in err

"""The board's `./run.sh validate` report, with stand-in runners instead of a deploy: it gates and words the
verdict as the host does (edge/report.py), and copes with a bundle that has no float model."""
from __future__ import annotations

import types

import numpy as np
import pytest

from conftest import _BGR, CLASSES
from edge.dataset import ClassTable
from edge.isa import detect
from edge.preprocess import Preprocess
from edge.report import MISMATCH, NO_FLOAT, TABLE, isa_mismatch
from edge.validate import validate_bundle
from pipeline.ship.report import _verdict_lines

PRE = Preprocess(32, 32)


class ColourRunner:
    """Nearest class colour to the image's mean (right on the colour images); `shift` moves every answer one class on."""
    runtime, threads = "stand-in", 1

    def __init__(self, shift: int = 0):
        self.centres = np.stack([PRE(np.full((32, 32, 3), _BGR[c], np.uint8)).mean((1, 2)) for c in CLASSES])
        self.shift = shift

    def infer(self, x: np.ndarray) -> np.ndarray:
        d = ((x.mean((2, 3))[:, None, :] - self.centres[None]) ** 2).sum(-1)
        return np.roll(-d, self.shift, axis=1)


def _bundle(tmp_path, runners: dict, max_drop: float, int8_isa: str):
    host = {"accuracy": {"int8": {"top1": 0.5, "top5": 1.0}, "top1_agreement": 0.75},
            "latency_ms": {"p50": 1.0, "p90": 1.5, "p99": 2.0, "mean": 1.2, "runs": 5}, "throughput_fps": 833.3,
            "runtime": "openvino 2026", "data": "the host's folder", "calibration": {"count": 16}}
    config = {"model": "b0", "target": "openvino", "quant": "int8-ptq", "artifact": "model/int8.xml",
              "thresholds": {"max_drop": max_drop}, "int8_isa": int8_isa, "host": host}
    if "float" in runners:
        config["float_artifact"] = "model/float.xml"
    return types.SimpleNamespace(root=tmp_path, config=config, preprocess=PRE, model_input=PRE, blank=PRE.blank,
                                 classes=ClassTable.plain(CLASSES), runner=lambda which, threads: runners[which])


def _args(data, out, strict=False):
    return types.SimpleNamespace(data=str(data), max_images=0, threads=None, warmup=1, runs=3, strict=strict, out=str(out))


@pytest.mark.parametrize("shift,max_drop,verdict", [(0, 30.0, "passed"), (1, 1.0, "failed")])
def test_board_words_the_verdict_as_the_host(shift, max_drop, verdict, colour_data, tmp_path, capsys):
    runners = {"float": ColourRunner(), "int8": ColourRunner(shift)}
    r = validate_bundle(_bundle(tmp_path, runners, max_drop, detect()), _args(colour_data, tmp_path / "v"))
    assert r["accuracy"]["float"]["top1"] == 1.0 and r["accuracy"]["images"] == 48
    assert r["verdict"] == verdict and r["ships"] == (verdict == "passed") and r["passed"] == (verdict == "passed")
    assert r["failures"] == ([r["fidelity"]["reason"]] if verdict == "failed" else [])
    assert capsys.readouterr().out.startswith(f"{verdict.upper()}: ")
    md = (tmp_path / "v" / "report.md").read_text()
    # The host's renderer, given the same verdict and figures, writes the same verdict and fidelity lines.
    assert "\n".join(_verdict_lines({**r, "data": {"embedded_sample": False}})) in md
    assert MISMATCH["board"] not in md
    lines = md.splitlines()
    table = lines[lines.index(TABLE[0]):lines.index("", lines.index(TABLE[0]))]
    assert len(table) == 5 and all(line.count("|") == TABLE[0].count("|") for line in table)  # float, int8, host rows
    assert "| int8 (host, openvino 2026) | 50.0 % | 100.0 % | 75.0 % | 1.00 | 1.50 | 2.00 | 833.3 | |" in md


def test_board_without_a_float_model_is_inconclusive(colour_data, tmp_path, capsys):
    other = "arm-neon" if detect() != "arm-neon" else "avx2"
    bundle = _bundle(tmp_path, {"int8": ColourRunner()}, 1.0, other)
    r = validate_bundle(bundle, _args(colour_data, tmp_path / "v", strict=True))
    assert r["verdict"] == "inconclusive" and not r["ships"] and r["failures"] == [] and r["fidelity"] is None
    assert r["accuracy"]["float"] is None and r["accuracy"]["int8"]["top1"] == 1.0
    out = capsys.readouterr()
    assert out.out.startswith(f"INCONCLUSIVE (STRICT: counts as a failure): {NO_FLOAT}") and "warning: this int8 model" in out.err
    md = (tmp_path / "v" / "report.md").read_text()
    assert f"**Verdict: inconclusive.** {NO_FLOAT}." in md and "float (device)" not in md and MISMATCH["board"] in md


def test_isa_mismatch():
    assert isa_mismatch("avx2", "avx512-vnni", "host") and isa_mismatch("avx2", "avx512-vnni", "board")
    assert not isa_mismatch("avx2", "avx2", "board") and not isa_mismatch(None, "avx2", "board")
    # A TensorRT model runs on the board's GPU, as made; the host validated it on its CPU.
    assert isa_mismatch("gpu", "avx2", "host") and not isa_mismatch("gpu", "arm-dotprod", "board")

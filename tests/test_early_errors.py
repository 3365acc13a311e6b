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
    err = one_line_error(["deploy", "--target", "openvino", "--set", "settings.calibration=kl"], run_folder, capsys)
    assert "this target has no settings of its own" in err  # calibration is TARGET=onnx's
    err = one_line_error(["deploy", "--target", "onnx", "--set", "settings.calibration=kl"], run_folder, capsys)
    assert "settings.calibration='kl'" in err and "MinMax" in err


def test_weights_of_another_architecture(run_folder, colour_data, tmp_path, capsys):
    """Case 1: B3's state_dict given to MODEL=b0 was a 45-line traceback from the model stage."""
    from test_weights import state_of

    import torch

    torch.save(state_of("b3"), tmp_path / "other.pth")
    err = one_line_error(["deploy", "--model", "b0", "--weights", str(tmp_path / "other.pth"), "--data", str(colour_data)],
                         run_folder, capsys)
    assert err == f"error: WEIGHTS={tmp_path / 'other.pth'} does not fit MODEL=b0: its tensors are those of b3 (1000 classes); set MODEL=b3"


def _split_root(colour_data, root):
    import shutil

    for split in ("train", "val"):
        shutil.copytree(colour_data, root / split)
    return root


@pytest.mark.parametrize("quant", ["ptq", "qat"])
def test_data_that_is_a_dataset_root(quant, run_folder, colour_data, tmp_path, capsys):
    """Case 3a: DATA=root with train/ and val/ is refused (not guessed), naming the two settings to pass."""
    root = _split_root(colour_data, tmp_path / "root")
    err = one_line_error(["deploy", "--model", "b0", "--weights", "random", "--num-classes", "4", "--data", str(root),
                          "--quant", quant], run_folder, capsys)
    assert f"DATA={root} is a dataset root (train/, val/ inside)" in err
    assert f"pass DATA={root / 'val'} TRAIN_DATA={root / 'train'}" in err


def test_train_data_that_is_a_dataset_root(run_folder, colour_data, tmp_path, capsys):
    root = _split_root(colour_data, tmp_path / "root")
    err = one_line_error(["deploy", "--model", "b0", "--weights", "random", "--num-classes", "4", "--data", str(colour_data),
                          "--train-data", str(root), "--quant", "qat"], run_folder, capsys)
    assert f"TRAIN_DATA={root} is a dataset root" in err and f"pass TRAIN_DATA={root / 'train'} and DATA={root / 'val'}" in err


def test_data_that_is_flat(run_folder, colour_data, tmp_path, capsys):
    """Case 3b: images straight inside DATA; CALIB takes such a folder, DATA needs class folders."""
    import shutil

    flat = tmp_path / "flat"
    flat.mkdir()
    for p in colour_data.rglob("*.png"):
        shutil.copy(p, flat / p.name)
    err = one_line_error(["deploy", "--model", "b0", "--weights", "random", "--num-classes", "4", "--data", str(flat)],
                         run_folder, capsys)
    assert f"DATA={flat} holds images but no class subfolders: DATA needs one subfolder per class" in err
    assert f"can serve as CALIB={flat}" in err


def test_class_folders_the_model_does_not_know(run_folder, colour_data, capsys):
    """Case 3c: Lite0's ImageNet classes have no red/green/blue/yellow: fine-tune (make train) or other weights."""
    err = one_line_error(["deploy", "--model", "lite0", "--data", str(colour_data)], run_folder, capsys)
    assert "4 of 4 class folders" in err and "match no class of MODEL=lite0 (ImageNet's 1000 classes" in err
    assert "'blue', 'green', 'red', 'yellow'" in err
    assert "make train MODEL=lite0 DATA=<labelled training images>, then WEIGHTS=runs/lite0-train/best.pt" in err


def test_a_model_with_its_own_classes_needs_data(run_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the embedded sample is laid out under ./runs/_sample_data
    err = one_line_error(["report", "--model", "b0", "--weights", "random", "--num-classes", "4"], run_folder, capsys)
    assert "no DATA given" in err and "4-class model" in err and "pass DATA=" in err


def test_the_embedded_sample_still_passes_the_checks(tmp_path, monkeypatch):
    """DATA unset: the sample's WordNet-id folders are ImageNet classes, so an ImageNet model goes through."""
    from pipeline.config import make_config
    from pipeline.stages.context import Context

    monkeypatch.chdir(tmp_path)  # the sample is laid out under ./runs/_sample_data
    deploy = Context(make_config("openvino", {"model": "lite0", "out": str(tmp_path / "run")}), log=lambda *_: None)
    for stage in ("model", "validate", "report"):
        deploy.check_inputs(stage)
    assert deploy.data_is_sample and not (tmp_path / "run").exists()  # checking made no run folder


def test_a_run_folder_of_another_target_is_refused(run_folder, colour_data, tiny_checkpoint, capsys):
    """OUT= an OpenVINO run for TARGET=onnx replaced that run's artifacts and report; now one line, nothing changed."""
    err = one_line_error(["deploy", "--target", "onnx", "--model", "b0", "--weights", str(tiny_checkpoint),
                          "--data", str(colour_data), "--image-size", "64"], run_folder, capsys)
    assert f"run folder {run_folder} holds another run (model b0, target openvino)" in err and "pass another OUT=" in err

"""The board's artifacts take the camera's pixels and do colour order, normalisation and layout themselves."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import targets
from conftest import TINY_SIZE
from edge.bundle import Bundle
from edge.metrics import parity
from edge.preprocess import read_image
from edge.runners import as_input
from pipeline.model.family import get_spec
from pipeline.ship.report import PARITY_RTOL, _camera_input_checks
from pipeline.data.sample import CALIBRATION_PHOTOS, _skimage_photo

PRE = get_spec("b0").preprocess.at_size(TINY_SIZE)  # ImageNet's per-channel mean and std: the colour order matters


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    """Real photos at their own sizes and shapes (grey, colour, wide, tall), as a camera or a folder gives them."""
    return [read_image(_skimage_photo(p)) for p in CALIBRATION_PHOTOS]


def _against_host(target, artifact, pixel_artifact, photos, pre=PRE) -> dict:
    """The pixel artifact on the camera's pixels vs the same artifact fed the host's preprocessing."""
    host, board = target.runner(artifact, 2), target.runner(pixel_artifact, 2)
    board.accept_pixels(PRE)  # as the bundle's runner does: LiteRT's table; the others' artifacts hold it already
    assert board.takes_pixels and not host.takes_pixels
    fed = np.concatenate([board.infer(PRE.pixels(img)[None]) for img in photos])
    reference = np.concatenate([host.infer(pre(img)[None]) for img in photos])
    return parity(fed, reference)


@pytest.mark.parametrize("name,pixel_type", [("openvino", "uint8"), ("onnx", "uint8"), ("jetson", "float32"), ("tflite", "uint8")])
def test_pixel_artifacts_match_the_host_preprocessing_on_real_photos(name, pixel_type, target_artifacts, photos, tmp_path):
    target, made = targets.get_target(name), target_artifacts(name)
    checks = {}
    for precision in ("fp32", "int8"):
        pixel_artifact = target.with_pixel_input(made[precision], PRE, tmp_path / precision)
        runner = target.runner(pixel_artifact, 2)
        runner.accept_pixels(PRE)
        assert np.dtype(runner.input_dtype).name == pixel_type
        checks[precision] = _against_host(target, made[precision], pixel_artifact, photos)
    assert checks["fp32"]["relative_diff"] <= PARITY_RTOL, checks
    assert not _camera_input_checks({"float": checks["fp32"], "int8": checks["int8"], "images": len(photos)}), checks


def test_a_wrong_recipe_inside_the_artifact_fails_the_check(target_artifacts, photos, tmp_path):
    """An artifact normalising with other constants than the host's (here: RGB's mean and std in BGR order) is
    caught by the check the gate runs."""
    target, made = targets.get_target("openvino"), target_artifacts("openvino")
    wrong = dataclasses.replace(PRE, mean=PRE.mean[::-1], std=PRE.std[::-1])
    checks = {k: _against_host(target, made[k], target.with_pixel_input(made[k], wrong, tmp_path / k), photos)
              for k in ("fp32", "int8")}
    failures = _camera_input_checks({"float": checks["fp32"], "int8": checks["int8"], "images": len(photos)})
    assert failures and "float artifact that takes pixels" in failures[0], checks


@pytest.mark.parametrize("same,images,fails", [(1.0, 16, False), (255 / 256, 256, False), (0.75, 16, True),
                                               (0.9, 256, True), (14 / 16, 16, True)])
def test_the_int8_check_fails_on_evidence_not_on_one_rounding_flip(same, images, fails):
    """The int8 pixel artifact is the same model; a runtime folding the normalisation into its input quantizer can
    flip one near-tie (1 in 256 real photos, OpenVINO on AVX2). The gate fails when the images show the share of
    same top-1 below 99 %, which a wrong recipe does on a handful of images."""
    camera = {"float": {"relative_diff": 0.0}, "int8": {"top1_agreement": same}, "images": images}
    failures = _camera_input_checks(camera)
    assert bool(failures) == fails, failures
    assert not failures or f"of {images} images" in failures[0]


def test_tensors_never_reach_a_pixel_artifact_as_bytes():
    pixels = np.zeros((1, 8, 8, 3), np.uint8)
    assert as_input(pixels, np.float32).dtype == np.float32  # Jetson's float pixels: the bytes widen
    with pytest.raises(ValueError, match="Preprocess.pixels"):
        as_input(np.zeros((1, 3, 8, 8), np.float32), np.uint8)


@pytest.mark.parametrize("name", ["openvino", "onnx"])
def test_the_bundle_ships_and_reports_the_pixel_artifacts(name, deployed_tiny):
    run = deployed_tiny(name)
    report = json.loads((run / "report.json").read_text())
    camera = report["camera_input"]
    assert camera["pixel_type"] == "uint8" and camera["images"] >= 16  # the validation and calibration photos
    assert camera["float"]["relative_diff"] <= PARITY_RTOL and not _camera_input_checks(camera)
    assert "Camera input: the bundle's runner takes the camera's BGR pixels (uint8)" in (run / "report.md").read_text()
    bundle = Bundle.load(run / "bundle")
    assert bundle.takes_pixels and bundle.model_input == bundle.preprocess.pixels
    for which in ("int8", "float"):
        runner = bundle.runner(which)
        assert runner.takes_pixels and runner.infer(bundle.blank()).shape == (1, 4)


def _litert_pixel_bundle(target_artifacts, folder) -> Bundle:
    """A LiteRT bundle of the tiny int8 model as make deploy lays out its pixel-taking ones."""
    from edge.bundle import BUNDLE_FORMAT
    from edge.dataset import ClassTable

    (folder / "model").mkdir(parents=True)
    made = targets.get_target("tflite").with_pixel_input(target_artifacts("tflite")["int8"], PRE, folder / "model" / "int8")
    config = {"format": BUNDLE_FORMAT, "model": "b0", "quant": "ptq", "runtime": "litert", "artifact": f"model/{made.name}", "threads": 2,
              "preprocess": PRE.to_dict(), "input": "pixels", "classes": "labels.json"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "labels.json").write_text(json.dumps(ClassTable.plain(["a", "b", "c", "d"]).to_dict()))
    return Bundle.load(folder)


def test_a_litert_bundle_maps_pixels_by_table_bit_for_bit(target_artifacts, photos, tmp_path):
    """LiteRT's int8 input cannot hold per-channel mean/std, so the bundle's runner maps pixels to it by table: the
    model then sees exactly the input the host's tensor path gives it, and answers the same to the bit."""
    bundle = _litert_pixel_bundle(target_artifacts, tmp_path)
    board = bundle.runner("int8")
    host = targets.get_target("tflite").runner(bundle.root / bundle.config["artifact"], 2)
    assert board.takes_pixels and "table" in board.pixels_by
    for img in photos:
        np.testing.assert_array_equal(board.prepare(bundle.model_input(img)[None]), host.prepare(PRE(img)[None]))
        np.testing.assert_array_equal(board.infer(bundle.model_input(img)[None]), host.infer(PRE(img)[None]))
    with pytest.raises(ValueError, match="Preprocess.pixels"):
        board.infer(PRE(photos[0])[None])


def test_the_camera_program_maps_litert_pixels_on_its_capture_thread(target_artifacts, photos, tmp_path, monkeypatch):
    """The camera program's inference call is the interpreter's alone: the table runs on the capture thread, where it
    overlaps the previous frame's inference, and each decision is still the whole frame's answer."""
    import threading

    import cv2

    from edge.cli import main
    from edge.runners.litert import LiteRTRunner

    bundle = _litert_pixel_bundle(target_artifacts, tmp_path / "bundle")
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, img in enumerate(photos):
        cv2.imwrite(str(folder / f"{i}.png"), img)
    mapped_on, real_prepare = [], LiteRTRunner.prepare

    def prepare(self, batch):  # the real table, noting which thread runs it
        mapped_on.append(threading.current_thread().name)
        return real_prepare(self, batch)

    monkeypatch.setattr(LiteRTRunner, "prepare", prepare)
    out = tmp_path / "decisions.jsonl"
    assert main(["run", "--bundle", str(tmp_path / "bundle"), "--source", str(folder), "--headless", "--json", str(out)]) == 0
    decisions = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(decisions) == len(photos) and mapped_on and set(mapped_on) == {"grabber"}
    whole = bundle.runner("int8")
    for d in decisions:
        expected = whole.infer(bundle.model_input(read_image(folder / d["file"]))[None])[0]
        assert d["index"] == int(expected.argmax())


@pytest.mark.parametrize("name", ["tflite", "openvino"])
def test_the_bench_times_each_tool_comparison_on_what_the_camera_program_feeds(name, target_artifacts, photos, tmp_path):
    """make bench's ours-against-the-tool row runs the bundle's call on the bundle's artifact: the camera's pixels
    (LiteRT: through its table, no float tensor to quantize; OpenVINO: into the IR that holds the preprocessing)."""
    from pipeline.bench.run import as_the_camera_runs

    target = targets.get_target(name)
    artifact = target_artifacts(name)["int8"]
    used, runner, sample = as_the_camera_runs(target, artifact, PRE, 1, tmp_path / "camera-input")
    assert runner.takes_pixels and used.suffix == artifact.suffix
    assert sample.shape == (1, TINY_SIZE, TINY_SIZE, 3) and sample.dtype == np.uint8
    assert runner.infer(sample).shape == (1, 4)
    if name == "tflite":  # the table gives the model the host path's very input: the same answer to the bit
        host = target.runner(artifact, 1)
        for img in photos:
            np.testing.assert_array_equal(runner.infer(PRE.pixels(img)[None]), host.infer(PRE(img)[None]))

"""The one preprocessing used everywhere."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from edge.preprocess import Preprocess, read_image
from pipeline.model.family import get_spec


def test_constant_image_normalises_exactly():
    pre = Preprocess(32, 40, "bicubic", (0.5, 0.25, 0.0), (0.5, 0.25, 1.0))
    bgr = np.zeros((60, 90, 3), np.uint8)
    bgr[:] = (255, 0, 255)  # B=255, G=0, R=255
    x = pre(bgr)
    assert x.shape == (3, 32, 32) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], (1.0 - 0.5) / 0.5, atol=1e-6)  # R channel first
    np.testing.assert_allclose(x[1], (0.0 - 0.25) / 0.25, atol=1e-6)
    np.testing.assert_allclose(x[2], 1.0, atol=1e-6)


def test_centre_crop_of_a_wide_image():
    pre = Preprocess(10, 10, "nearest", (0, 0, 0), (1, 1, 1))
    bgr = np.zeros((10, 30, 3), np.uint8)
    bgr[:, 10:20] = 255  # only the middle third is white
    x = pre(bgr)
    assert x.min() == 1.0  # the crop saw only the white centre


def test_close_to_torchvision_eval_transform():
    """Same recipe as torchvision's ImageClassification transform, up to resampling differences."""
    spec = get_spec("b0")
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    bgr = cv2.resize(small, (400, 300), interpolation=cv2.INTER_LINEAR)  # smooth image: resamplers agree
    import torchvision.models as tvm

    tv = tvm.EfficientNet_B0_Weights.IMAGENET1K_V1.transforms()
    ref = tv(torch.from_numpy(bgr[:, :, ::-1].copy()).permute(2, 0, 1)).numpy()
    ours = spec.preprocess(bgr)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).mean() < 0.05


def test_grey_and_alpha_images_become_rgb():
    pre = Preprocess(16, 16)
    assert pre(np.full((20, 20), 128, np.uint8)).shape == (3, 16, 16)
    assert pre(np.full((20, 20, 4), 128, np.uint8)).shape == (3, 16, 16)
    with pytest.raises(ValueError):
        pre(np.zeros((0, 0, 3), np.uint8))


def test_at_size_keeps_the_crop_ratio_and_round_trips_as_dict():
    pre = get_spec("b0").preprocess.at_size(112)
    assert (pre.image_size, pre.resize_size) == (112, 128)
    assert Preprocess.from_dict(pre.to_dict()) == pre


def test_corrupt_and_empty_files_read_as_none(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "junk.png").write_bytes(b"\x89PNG not really")
    good = tmp_path / "ok.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(good)
    assert read_image(tmp_path / "empty.jpg") is None
    assert read_image(tmp_path / "junk.png") is None
    assert read_image(good)[0, 0].tolist() == [3, 2, 1]


def test_cropping_before_resizing_keeps_the_recipe_on_real_photos():
    """Only the kept square is resized (7.5 -> ~1.5 ms a 640x480 frame); on real photos the tensor stays the one
    resizing the whole image and then cropping gives, to a sub-pixel shift of the crop."""
    from pipeline.data.sample import CALIBRATION_PHOTOS, _skimage_photo

    pre = get_spec("b0").preprocess
    for name in CALIBRATION_PHOTOS:
        bgr = cv2.imread(str(_skimage_photo(name)))
        h, w = bgr.shape[:2]
        new_w = pre.resize_size if w <= h else int(pre.resize_size * w / h)
        new_h = pre.resize_size if h <= w else int(pre.resize_size * h / w)
        whole = cv2.resize(bgr, (new_w, new_h), interpolation=cv2.INTER_AREA)
        top, left = int(round((new_h - 224) / 2.0)), int(round((new_w - 224) / 2.0))
        crop = whole[top : top + 224, left : left + 224, ::-1].astype(np.float32) / 255.0
        reference = ((crop - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)).transpose(2, 0, 1)
        assert np.abs(pre(bgr) - reference).mean() < 0.04, name

"""Image preprocessing shared by calibration, validation, the bundle and the camera loop.

One implementation (OpenCV + numpy) so the same image becomes the same tensor
everywhere: on the host while calibrating and validating, and on the board.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import cv2
import numpy as np

INTERPOLATIONS = {
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
    "area": cv2.INTER_AREA,
}


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to `resize_size`, centre-crop `image_size`, normalise, NCHW RGB."""

    image_size: int
    resize_size: int
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {self.interpolation!r}; use one of {sorted(INTERPOLATIONS)}")
        if self.resize_size < self.image_size:
            raise ValueError(f"resize_size {self.resize_size} is smaller than the crop {self.image_size}")

    def at_size(self, image_size: int) -> "Preprocess":
        """The same recipe at another crop size, keeping the resize/crop ratio."""
        resize = round(image_size * self.resize_size / self.image_size)
        return Preprocess(image_size, resize, self.interpolation, tuple(self.mean), tuple(self.std))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        return cls(
            image_size=int(d["image_size"]),
            resize_size=int(d["resize_size"]),
            interpolation=d["interpolation"],
            mean=tuple(float(x) for x in d["mean"]),
            std=tuple(float(x) for x in d["std"]),
        )

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        """One BGR uint8 image (as OpenCV reads it) -> float32 array of shape (3, H, W): `normalize(pixels(bgr))`."""
        return self.normalize(self.pixels(bgr))

    def pixels(self, bgr: np.ndarray) -> np.ndarray:
        """One BGR uint8 image -> the centre crop at the model's size, still uint8 BGR (H, W, 3).

        What the board's artifacts take where they hold the rest of the preprocessing themselves (colour order,
        normalisation, layout): the resize stays here, with OpenCV, so host and board resize the same way.
        Only the part of the image the centre crop keeps is resized, straight to the crop size: 7.5 -> ~1.2 ms for
        a 640x480 frame on this project's 2-core machine, where the capture thread shares the cores with inference.
        """
        if bgr is None or bgr.size == 0:
            raise ValueError("empty image")
        if bgr.ndim == 2:
            bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
        elif bgr.shape[2] == 4:
            bgr = cv2.cvtColor(bgr, cv2.COLOR_BGRA2BGR)
        top, bottom, left, right = self._kept(*bgr.shape[:2])
        interp = INTERPOLATIONS[self.interpolation]
        if bottom - top > self.image_size and self.interpolation in ("bilinear", "bicubic"):
            interp = cv2.INTER_AREA  # downscaling with a cubic kernel aliases; area averages
        return cv2.resize(bgr[top:bottom, left:right], (self.image_size, self.image_size), interpolation=interp)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 BGR (H, W, 3) -> float32 RGB (3, H, W): (x / 255 - mean) / std as one multiply-add per channel.

        The artifacts that take pixels compute the same formula (targets: with_pixel_input)."""
        out = np.empty((3, *pixels.shape[:2]), np.float32)
        scale, shift = self.scale, self.shift
        for channel in range(3):  # RGB out of BGR
            np.multiply(pixels[:, :, 2 - channel], scale[channel], out=out[channel])
            out[channel] += shift[channel]
        return out

    def blank(self, pixels: bool = False) -> np.ndarray:
        """A batch of one all-zero input, for timing: pixels (1, H, W, 3) uint8 or a tensor (1, 3, H, W) float32."""
        size = self.image_size
        return np.zeros((1, size, size, 3), np.uint8) if pixels else np.zeros((1, 3, size, size), np.float32)

    def _kept(self, h: int, w: int) -> tuple[int, int, int, int]:
        """The source rows and columns [top, bottom) x [left, right) that torchvision's recipe keeps: the shorter
        side resized to exactly resize_size (Resize(int) rounding), then the centre image_size crop, mapped back
        to the source to the nearest pixel."""
        new_w = self.resize_size if w <= h else int(self.resize_size * w / h)
        new_h = self.resize_size if h <= w else int(self.resize_size * h / w)
        crop_top = int(round((new_h - self.image_size) / 2.0))
        crop_left = int(round((new_w - self.image_size) / 2.0))
        sy, sx = h / new_h, w / new_w
        top, left = round(crop_top * sy), round(crop_left * sx)
        bottom = max(top + 1, round((crop_top + self.image_size) * sy))
        right = max(left + 1, round((crop_left + self.image_size) * sx))
        return top, min(bottom, h), left, min(right, w)

    @property
    def scale(self) -> np.ndarray:
        """Per RGB channel: the multiplier of a 0-255 pixel value."""
        return np.float32(1.0 / 255.0) / np.asarray(self.std, np.float32)

    @property
    def shift(self) -> np.ndarray:
        """Per RGB channel: what is added after scaling."""
        return -np.asarray(self.mean, np.float32) / np.asarray(self.std, np.float32)


def read_image(path: str | Path) -> np.ndarray | None:
    """Decode an image file as BGR uint8; None when the file is unreadable or corrupt."""
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        return None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        return None
    return img


def read_images(items: Iterable, path_of: Callable = lambda item: item, skipped: list | None = None) -> Iterator:
    """(item, BGR image) for each readable item, in order; the unreadable ones' paths go to `skipped`.

    The one read-and-skip rule for calibration, validation and the board: a corrupt file is
    counted and reported, never fatal on its own.
    """
    for item in items:
        img = read_image(path_of(item))
        if img is None:
            if skipped is not None:
                skipped.append(str(path_of(item)))
            continue
        yield item, img

"""Fashion-MNIST as labelled folders: real images for fine-tune -> PTQ -> QAT runs without a network.

Debian's `dataset-fashion-mnist` package ships the four IDX files (70 000 labelled 28x28 images);
`python -m pipeline fashion-mnist --out data/fashion-mnist` writes a class-balanced subset as
train/ and val/ PNG folders that `make train` and `make deploy DATA= TRAIN_DATA=` read.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import cv2
import numpy as np

from pipeline import PipelineError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]


def _idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format): magic with the dimension count, then big-endian sizes, then uint8 data."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(split: str, source: Path = DEBIAN_DIR) -> tuple[np.ndarray, np.ndarray]:
    """(images N x 28 x 28, labels N) of the "train" (60 000) or "t10k" (10 000) split."""
    images, labels = source / f"{split}-images-idx3-ubyte.gz", source / f"{split}-labels-idx1-ubyte.gz"
    if not images.exists() or not labels.exists():
        raise PipelineError(f"Fashion-MNIST not found in {source}; install it with: sudo apt install dataset-fashion-mnist")
    return _idx(images), _idx(labels)


def _write(folder: Path, images: np.ndarray, labels: np.ndarray, per_class: int, rng: np.random.Generator) -> int:
    count = 0
    for c, name in enumerate(CLASSES):
        d = folder / name
        d.mkdir(parents=True, exist_ok=True)
        for i in rng.permutation(np.flatnonzero(labels == c))[:per_class]:
            cv2.imwrite(str(d / f"{i:05d}.png"), images[i])
            count += 1
    return count


def export_folders(out: str | Path, train_per_class: int = 100, val_per_class: int = 30, seed: int = 0,
                   source: Path = DEBIAN_DIR) -> dict:
    """train/ from the training split and val/ from the test split, `*_per_class` images of each class."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    train = _write(out / "train", *load("train", source), train_per_class, rng)
    val = _write(out / "val", *load("t10k", source), val_per_class, rng)
    return {"train": str(out / "train"), "val": str(out / "val"), "train_images": train, "val_images": val}

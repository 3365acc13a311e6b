"""The calibration set on disk, in its stage's folder of the run: the preprocessed batch (calibration.npy) and the
file behind each of its rows (files.json), which later stages read to keep calibration and validation apart."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


BATCH = "calibration.npy"
FILES = "files.json"


def save(calib, folder: Path) -> dict:
    """Write `calib` (a calibration.sets.CalibrationSet) into `folder`; its summary for the stage's record."""
    np.save(folder / BATCH, calib.batch)
    (folder / FILES).write_text(json.dumps(calib.files))
    return {**calib.summary(), "skipped_files": calib.skipped}


def batch(folder: Path) -> np.ndarray:
    return np.load(folder / BATCH)


def files(folder: Path) -> list[str]:
    """The image behind each row of the batch ([] for random data, or a set cached before files were kept)."""
    path = folder / FILES
    return json.loads(path.read_text()) if path.exists() else []

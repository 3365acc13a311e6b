"""Choosing the calibration set: stratified from a labelled folder, from an unlabelled folder, from frames captured on
the board with their held-out split, or random data only by name.

Images are picked stratified by class folder (round robin over shuffled folders), so a
300-image set from a 10-class folder holds 30 of each. Random data is used only when the
user asks for it by name (`CALIB=random`) and is then flagged in the report.
"""
from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calibration import RANDOM
from edge.capture import MANIFEST as CAPTURE_MANIFEST
from edge.dataset import check_folder, list_images
from edge.errors import UserError
from edge.preprocess import Preprocess, read_images

HELD_OUT_EVERY = 4  # a capture folder keeps 1 frame in 4 out of calibration, to validate int8 on without labels


@dataclass
class CalibrationSet:
    batch: np.ndarray  # (N, 3, H, W) float32, preprocessed exactly as for validation
    source: str
    random: bool = False
    skipped: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # the file behind each row of `batch`

    def summary(self) -> dict:
        return {"source": self.source, "count": int(len(self.batch)), "random": self.random, "skipped": len(self.skipped)}


def captured_split(folder: str | Path) -> tuple[list[Path], list[Path]] | None:
    """A folder `make capture` wrote (its capture.json): (calibration frames, held-out frames), one in HELD_OUT_EVERY
    held out, chosen by a hash of the file name so every run splits alike; None for any other folder."""
    folder = Path(folder)
    if not (folder / CAPTURE_MANIFEST).is_file():
        return None
    paths = list_images(folder)
    held = set(sorted(paths, key=lambda p: hashlib.sha256(p.name.encode()).hexdigest())[::HELD_OUT_EVERY])
    return [p for p in paths if p not in held], [p for p in paths if p in held]


def choose(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """Up to `n` images from `folder`, stratified by the folder each image sits in (a capture folder's calibration part)."""
    groups: dict[Path, list[Path]] = defaultdict(list)
    split = captured_split(folder)
    for p in split[0] if split else list_images(folder):
        groups[p.parent].append(p)
    rng = random.Random(seed)
    queues = []
    for parent in sorted(groups):
        files = groups[parent][:]
        rng.shuffle(files)
        queues.append(files)
    chosen: list[Path] = []
    while len(chosen) < n and any(queues):
        for q in queues:
            if q and len(chosen) < n:
                chosen.append(q.pop())
    return chosen


def build(source: str | Path, n: int, preprocess: Preprocess, seed: int = 0, progress=None) -> CalibrationSet:
    """The calibration batch from a folder (labelled or not), or random data if `source == 'random'`."""
    if str(source) == RANDOM:
        rng = np.random.default_rng(seed)
        size = preprocess.image_size
        batch = rng.standard_normal((n, 3, size, size), dtype=np.float32)
        return CalibrationSet(batch, RANDOM, random=True)
    folder = check_folder(source, "CALIB")
    arrays, skipped, files = [], [], []
    candidates = choose(folder, n * 2, seed)  # spares, in case some files are corrupt
    it = progress(candidates, desc="calibration images", total=min(n, len(candidates))) if progress else candidates
    for path, img in read_images(it, skipped=skipped):
        arrays.append(preprocess(img))
        files.append(str(path))
        if len(arrays) == n:
            break
    if not arrays:
        raise UserError(f"no readable images in calibration folder {folder}; all {len(skipped)} were corrupt")
    return CalibrationSet(np.stack(arrays), str(folder), skipped=skipped, files=files)

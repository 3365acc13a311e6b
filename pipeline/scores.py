"""Validation on the host: the float PyTorch model beside the target's artifacts in the target runtime."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from edge.evaluate import classify
from edge.latency import measure
from edge.metrics import accuracy, agreement, paired_counts, parity  # noqa: F401  (re-exported for the host)
from edge.preprocess import Preprocess
from edge.dataset import Sample


def torch_infer(model):
    def infer(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(batch)).numpy()

    return infer


def classify_all(samples: list[Sample], preprocess: Preprocess, model, runners: dict, progress=None) -> dict:
    """Logits of the PyTorch model ("torch") and of each runner on every readable image."""
    models = {"torch": torch_infer(model), **{name: r.infer for name, r in runners.items()}}
    return classify(samples, preprocess, models, progress)


def latency(runner, sample: np.ndarray, warmup: int, runs: int) -> dict:
    return measure(runner.infer, sample, warmup=warmup, runs=runs)


def rows_not_among(files: list[str], among: list) -> list[int]:
    """Indices of `files` whose content is not one of the images at the paths `among` (a copy in another folder counts)."""
    paths = {Path(f).resolve() for f in among}
    by_size: dict[int, list[Path]] = {}
    for p in paths:
        by_size.setdefault(p.stat().st_size, []).append(p)
    digests: dict[Path, str] = {}

    def digest(p: Path) -> str:
        if p not in digests:
            digests[p] = hashlib.sha256(p.read_bytes()).hexdigest()
        return digests[p]

    rows = []
    for i, f in enumerate(files):
        p = Path(f).resolve()
        same_size = by_size.get(p.stat().st_size, []) if p.exists() else []
        if p not in paths and not any(digest(q) == digest(p) for q in same_size):
            rows.append(i)
    return rows

"""Classify a labelled folder with several models at once; corrupt images are skipped and counted."""
from __future__ import annotations

from typing import Callable

import numpy as np

from edge.dataset import Sample
from edge.preprocess import Preprocess, read_images


def classify(samples: list[Sample], preprocess: Preprocess, models: dict[str, Callable], progress=None) -> dict:
    """`models` maps a name to infer(NCHW batch) -> logits. Returns logits per model, labels, skipped files."""
    logits = {name: [] for name in models}
    labels, skipped = [], []
    shown = progress(samples, desc="validation images") if progress else samples
    for sample, img in read_images(shown, lambda s: s.path, skipped):
        x = preprocess(img)[None]
        for name, infer in models.items():
            logits[name].append(np.asarray(infer(x)))
        labels.append(sample.label)
    out = {name: np.concatenate(rows, axis=0) if rows else np.zeros((0, 1), np.float32) for name, rows in logits.items()}
    return {"logits": out, "labels": np.asarray(labels, dtype=np.int64), "skipped": skipped}

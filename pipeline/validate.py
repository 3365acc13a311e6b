"""Validation: the float PyTorch model vs the target's artifacts run in the target's own runtime."""
from __future__ import annotations

import numpy as np
import torch

from edge.latency import measure
from edge.preprocess import Preprocess, read_image
from pipeline.data import Sample


def topk_hits(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    k = min(k, logits.shape[1])
    top = np.argsort(-logits, axis=1)[:, :k]
    return (top == labels[:, None]).any(axis=1)


def classify_all(samples: list[Sample], preprocess: Preprocess, model, runners: dict, progress=None) -> dict:
    """Logits of the PyTorch model and of each runner on every readable image; corrupt ones counted."""
    logits = {"torch": [], **{name: [] for name in runners}}
    labels, skipped = [], []
    it = progress(samples, desc="validation images") if progress else samples
    for sample in it:
        img = read_image(sample.path)
        if img is None:
            skipped.append(str(sample.path))
            continue
        x = preprocess(img)[None]
        with torch.no_grad():
            logits["torch"].append(model(torch.from_numpy(x)).numpy())
        for name, r in runners.items():
            logits[name].append(r.infer(x))
        labels.append(sample.label)
    out = {name: np.concatenate(rows, axis=0) if rows else np.zeros((0, 1), np.float32) for name, rows in logits.items()}
    return {"logits": out, "labels": np.asarray(labels, dtype=np.int64), "skipped": skipped}


def accuracy(logits: np.ndarray, labels: np.ndarray) -> dict:
    n = len(labels)
    if n == 0:
        return {"top1": None, "top5": None}
    return {"top1": float(topk_hits(logits, labels, 1).mean()), "top5": float(topk_hits(logits, labels, 5).mean())}


def agreement(a: np.ndarray, b: np.ndarray) -> float | None:
    """Fraction of images on which two models' top-1 classes agree."""
    if len(a) == 0:
        return None
    return float((a.argmax(1) == b.argmax(1)).mean())


def parity(artifact: np.ndarray, reference: np.ndarray) -> dict:
    """How far a float artifact's logits are from the reference model's."""
    diff = float(np.abs(artifact - reference).max())
    scale = max(float(np.abs(reference).max()), 1e-12)
    return {"max_abs_diff": diff, "relative_diff": diff / scale, "top1_agreement": agreement(artifact, reference)}


def latency(runner, sample: np.ndarray, warmup: int, runs: int) -> dict:
    return measure(runner.infer, sample, warmup=warmup, runs=runs)


def torch_latency(model, sample: np.ndarray, warmup: int, runs: int) -> dict:
    x = torch.from_numpy(sample)

    def infer(_):
        with torch.no_grad():
            return model(x)

    return measure(infer, sample, warmup=warmup, runs=runs)

"""Accuracy, agreement and the accuracy gate, on logits (numpy only: host and board share them)."""
from __future__ import annotations

import numpy as np


def topk_hits(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    k = min(k, logits.shape[1])
    top = np.argsort(-logits, axis=1)[:, :k]
    return (top == labels[:, None]).any(axis=1)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> dict:
    if len(labels) == 0:
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


def accuracy_gate(float_top1: float, int8_top1: float, max_drop: float) -> str | None:
    """None when int8 top-1 is within `max_drop` points of float, else the reason it is not."""
    drop = (float_top1 - int8_top1) * 100
    if drop > max_drop:
        return f"int8 top-1 is {drop:.2f} points below float, more than MAX_DROP={max_drop}"
    return None


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)

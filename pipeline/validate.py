"""Validation on the host: the float PyTorch model beside the target's artifacts in the target runtime."""
from __future__ import annotations

import numpy as np
import torch

from edge.evaluate import classify
from edge.latency import measure
from edge.metrics import accuracy, agreement, parity  # noqa: F401  (re-exported for the host)
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

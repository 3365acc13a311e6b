"""The small interface every target implements.

A target converts the float PyTorch model into its own float artifact, quantizes to
an int8 artifact, and loads either in its own runtime as a `Runner`. Heavy imports
live inside functions so `import targets` never needs a runtime installed.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol

import numpy as np


class MissingRuntime(RuntimeError):
    """A target's runtime or converter package is not installed."""


def require(module: str, pip_name: str, target: str):
    """Import `module` or fail with a one-line message naming the package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingRuntime(
            f"target {target!r} needs the Python package {pip_name!r} ({e}); install it with: pip install {pip_name}"
        ) from None


class Runner(Protocol):
    """A model loaded in the target's own runtime."""

    runtime: str  # e.g. "openvino 2026.4 (CPU, f32)"
    threads: int

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """NCHW float32 batch -> logits (N, classes)."""


class Target(Protocol):
    name: str
    requires: tuple[str, ...]  # pip packages the host needs for convert/quantize
    device_requires: tuple[str, ...]  # pip packages a board needs to run the artifact
    artifact_suffix: str

    def convert_float(self, model, example, out: Path) -> Path:
        """Float PyTorch model -> float artifact at `out` (a path without suffix)."""

    def quantize(self, model, float_artifact: Path, calibration: np.ndarray, quant, out: Path) -> Path:
        """Float artifact (or model) + calibration batch -> int8 artifact at `out`."""

    def runner(self, artifact: Path, threads: int = 0, precision: str = "f32") -> Runner:
        """Load an artifact in the target runtime."""

    def describe(self, artifact: Path) -> dict:
        """Facts about an artifact for the report (e.g. how many int8 ops it holds)."""

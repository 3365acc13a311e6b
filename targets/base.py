"""The small interface every target implements.

A target converts the float PyTorch model into its own float artifact, quantizes to
an int8 artifact, and loads either in its own runtime as a `Runner`. Heavy imports
live inside functions so `import targets` never needs a runtime installed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from edge.errors import UserError
from edge.runners import MissingRuntime, require  # noqa: F401  (one definition, shared with the board)


class Runner(Protocol):
    """A model loaded in the target's own runtime."""

    runtime: str  # e.g. "openvino 2026.4 (CPU, f32)"
    threads: int

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """NCHW float32 batch -> logits (N, classes)."""


class Target(Protocol):
    name: str
    requires: tuple[str, ...]  # pip packages the host needs for convert/quantize
    device_runtime: str  # edge.runners.load_runner's name for it: openvino, onnxruntime, tensorrt
    device_requires: tuple[str, ...]  # pip requirements a board needs to run the artifact
    artifact_suffix: str
    qat_preset: str | None  # NNCF preset QAT must use here (None = quant.preset)
    higher_precision: str  # what QUANT=auto keeps a sensitive layer in ("float", "int16 activations ...")

    def convert_float(self, model, example, out: Path) -> Path:
        """Float PyTorch model -> float artifact at `out` (a path without suffix)."""

    def quantize(self, model, float_artifact: Path, calibration: np.ndarray, quant, out: Path, exclude: tuple[str, ...] = ()) -> Path:
        """Float artifact (or model) + calibration batch -> int8 artifact at `out`.

        `exclude` names PyTorch modules (e.g. "blocks.0.0.conv_dw") to keep in float: the
        accuracy-aware mode's lever. Targets that cannot keep a layer out raise UserError.
        """

    def export_qat(self, qat_model, float_model, example, calibration: np.ndarray, quant, out: Path) -> Path:
        """A model trained under NNCF fake quantization -> the target's int8 artifact, as PTQ exports it."""

    def runner(self, artifact: Path, threads: int = 0, precision: str = "f32") -> Runner:
        """Load an artifact in the target runtime."""

    def describe(self, artifact: Path) -> dict:
        """Facts about an artifact for the report (e.g. how many int8 ops it holds)."""


def nncf_dataset(nncf, calibration: np.ndarray, transform=None):
    """The calibration batch as NNCF's dataset: one image per item (the static batch of 1 the
    artifacts have); `transform` turns an item into what the model takes (a dict, a tensor)."""
    return nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))], transform)


def trained_float_model(qmodel, folded):
    """The folded float model carrying the weights QAT trained (for targets that re-quantize them)."""
    import copy

    tuned = copy.deepcopy(folded)
    own = tuned.state_dict()
    state = {k: v for k, v in qmodel.state_dict().items() if k in own}
    missing = sorted(set(own) - set(state))
    if missing:
        raise UserError(f"the QAT model lost {len(missing)} float parameters (e.g. {missing[0]}); report this as a bug")
    tuned.load_state_dict(state)
    return tuned.eval()


def requantize(convert_float, quantize, qmodel, folded, example, calibration: np.ndarray, quant, out: Path) -> Path:
    """QAT-trained weights through a target's own PTQ route: its `convert_float`, then its `quantize`.

    For targets whose converter or fast kernels do not take NNCF's quantizers: what QAT carries
    over is weights trained to tolerate int8 rounding; the activation ranges are calibrated again.
    """
    import tempfile

    tuned = trained_float_model(qmodel, folded)
    with tempfile.TemporaryDirectory() as tmp:
        float_artifact = convert_float(tuned, example, Path(tmp) / "float")
        return quantize(tuned, float_artifact, calibration, quant, out)

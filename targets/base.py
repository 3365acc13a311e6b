"""The interface every target implements, with the defaults of its optional capabilities.

A target converts the float PyTorch model into its own float artifact, quantizes to an int8
artifact, and loads either in its own runtime as a `Runner` (edge/runners.py, the one runner
registry, for host and board alike). Heavy imports live inside methods, so `import targets`
never needs a runtime installed. Each target module defines one subclass and `TARGET`, its instance.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import UserError
from edge.isa import saturates
from edge.runners import MissingRuntime, Runner, load_runner, require  # noqa: F401  (one definition, shared with the board)
from edge.runners.emulated import EmulatedRunner

# pip provides OpenCV on every board but a Jetson, whose JetPack has it (with GStreamer).
OPENCV = "opencv-python-headless>=4.8  # on a board with a desktop, opencv-python gives the overlay window"
BOARD_VENV = ("`python3 -m venv --system-site-packages .venv && .venv/bin/pip install -r requirements.txt` "
              "(run.sh uses `.venv` when it is there)")


@dataclass(frozen=True)
class NoSettings:
    """The settings of a target that has none of its own."""


def bias_recipe(quant) -> dict:
    return {"bias_correction": f"{quant.bias_correction} (NNCF)"}


class Target:
    name: str
    requires: dict[str, str]  # pip package the host needs for convert/quantize -> the module it installs
    device_runtime: str  # edge.runners.RUNTIMES name the board loads the artifact with
    device_requires: tuple[str, ...]  # the bundle's requirements.txt lines (comments allowed) beside numpy
    device_install: str = BOARD_VENV  # how the bundle's README says to install them
    artifact_suffix: str
    # The frozen dataclass of this target's own settings (SET=settings.<field>=...; its profile's `settings:`), checked
    # where they are made; DeployConfig.settings holds them, and quantize(settings=...) reads them.
    settings: type = NoSettings
    qat_preset: str | None = None  # NNCF preset QAT must use here (None = quant.preset)
    higher_precision: str = "float"  # what QUANT=auto keeps a sensitive layer in
    # QUANT=auto: whether the target has its own accuracy-aware search (quantize_accuracy_aware,
    # float_compute_layers, layer_times); without one, the greedy search re-quantizes with `exclude`.
    own_accuracy_search: bool = False
    # Whether the int8 artifact must hold no float compute at all (integer-only kernels and accelerators):
    # the gate then fails one that describe() finds float compute ops in.
    full_integer: bool = False

    def is_available(self) -> tuple[bool, str]:
        """Whether this host can convert and quantize for the target, and if not, what to install."""
        missing = [pip for pip, module in self.requires.items() if importlib.util.find_spec(module) is None]
        return (not missing, f"{self.name} needs {', '.join(missing)}: pip install {' '.join(missing)}" if missing else "")

    def convert_float(self, model, example, out: Path) -> Path:
        """Float PyTorch model -> float artifact at `out` (a path without suffix)."""
        raise NotImplementedError

    def quantize(self, model, float_artifact: Path, calibration: np.ndarray, quant, out: Path, exclude: tuple[str, ...] = (), *,
                 isa: str, settings=None) -> Path:
        """Float artifact (and model) + calibration batch -> int8 artifact at `out`.

        `exclude` names PyTorch modules (e.g. "blocks.0.0.conv_dw") to keep at `higher_precision`:
        the accuracy-aware mode's lever.
        """
        raise NotImplementedError

    def export_qat(self, qat_model, float_model, example, calibration: np.ndarray, quant, out: Path, *, isa: str) -> Path:
        """A model trained under NNCF fake quantization -> the target's int8 artifact, as PTQ exports it."""
        raise NotImplementedError

    def recipe(self, quant, isa: str) -> dict:
        """The quantizer settings for `quant` (pipeline.config.QuantConfig) on a board of int8 ISA `isa` (board.isa), as
        the report states them: NNCF's, whose overflow fix leaves 7-bit headroom where the board's int8 sums saturate."""
        return {"nncf.overflow_fix": "ENABLE" if saturates(isa) else "DISABLE", "activation_scales": quant.activation_scales,
                **bias_recipe(quant)}

    def check(self, cfg) -> None:
        """Refuse, when the config is read, a setting this target cannot honour (cfg: pipeline.config.DeployConfig)."""

    @property
    def host_runtime(self) -> str:
        """The edge.runners.RUNTIMES name this host runs the board's artifacts with: the board's own runtime."""
        return self.device_runtime

    def board_requirements(self) -> list[str]:
        """What the board's Python needs for this target's bundle (pip requirement lines)."""
        return ["numpy>=1.24", *self.device_requires]

    def runner(self, artifact: Path, threads: int = 0, precision: str = "f32", purpose: str = "time", arithmetic=None) -> Runner:
        """The artifact in the runtime the board uses. purpose="time": this host's fastest kernels, what latency is
        timed on. purpose="judge": int8 in the board's arithmetic, as `arithmetic` (pipeline.emulation.Arithmetic,
        passed in) says: on the board's CPU emulated, with unsaturated sums where this host's kernels would saturate
        sums the board's never do (`edge.isa.must_not_saturate`), or this host's own kernels where they are the board's."""
        if purpose not in ("time", "judge"):
            raise ValueError(f"purpose={purpose!r}: use 'time' or 'judge'")
        if purpose == "judge" and arithmetic is not None and arithmetic.emulated:
            argv, env, seen_as = arithmetic.launch(artifact, self.board_requirements())
            return EmulatedRunner(argv, arithmetic.cpu, self.device_runtime, seen_as, threads, precision, env=env)
        unsaturated = purpose == "judge" and arithmetic is not None and arithmetic.kind == "unsaturated"
        return load_runner(self.host_runtime, artifact, threads, precision, unsaturated_int8=unsaturated)

    def describe(self, artifact: Path) -> dict:
        """Facts about an artifact for the report: compute ops, how many read int8, their MAC share."""
        raise NotImplementedError

    def layer_errors(self, float_artifact: Path, int8_artifact: Path, batch: np.ndarray, worst: int = 10) -> list[dict] | None:
        """The int8 graph's worst layers against the float graph's, or None where the target cannot compare them."""
        return None

    def quantize_accuracy_aware(self, float_artifact: Path, calibration: np.ndarray, quant, val_x: np.ndarray,
                                val_y: np.ndarray, max_drop_points: float, out: Path, *, isa: str) -> Path:
        """The target's own accuracy-aware search (own_accuracy_search targets only)."""
        raise NotImplementedError(f"{self.name} has no accuracy-aware search of its own")

    def float_compute_layers(self, artifact: Path) -> list[str]:
        """PyTorch names of the compute layers an artifact runs in float (own_accuracy_search targets)."""
        raise NotImplementedError

    def with_pixel_input(self, artifact: Path, preprocess, out: Path) -> Path | None:
        """The artifact taking the camera's pixels (uint8 BGR, H x W x 3 at the model's size, as
        `Preprocess.pixels` gives them) and doing the colour order, normalisation and layout itself, at
        `out` (a path without suffix); None where the target leaves them to the host (`Preprocess.normalize`)."""
        return None

    def layer_times(self, artifact: Path, sample: np.ndarray, runs: int = 50, threads: int = 0) -> dict[str, float]:
        """Milliseconds per compute layer by PyTorch name, from the runtime's own counters ({} when it has none)."""
        return {}


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


def requantize(target: Target, qmodel, folded, example, calibration: np.ndarray, quant, out: Path, isa: str,
               settings=None) -> Path:
    """QAT-trained weights through a target's own PTQ route: its `convert_float`, then its `quantize`.

    For targets whose converter or fast kernels do not take NNCF's quantizers: what QAT carries
    over is weights trained to tolerate int8 rounding; the activation ranges are calibrated again.
    """
    import tempfile

    tuned = trained_float_model(qmodel, folded)
    with tempfile.TemporaryDirectory() as tmp:
        float_artifact = target.convert_float(tuned, example, Path(tmp) / "float")
        return target.quantize(tuned, float_artifact, calibration, quant, out, isa=isa, settings=settings)

"""Which arithmetic judges an int8 artifact: the board's own, emulated by QEMU, where this host can emulate it.

The same int8 artifact gives different answers on CPUs with different int8 instructions (edge.isa). Deploying for a
board whose CPU is not this host's, the gate should judge the board's answers:
- an x86 board QEMU can model (`board.isa=avx2`: Haswell, whose u8×s8 pair sums saturate in 16 bits): the same venv's
  Python under `qemu-x86_64 -cpu Haswell`, the runtimes' real AVX2 kernels, about 100x slower;
- an Arm board (Raspberry Pi 4 / 5: cortex-a72 / cortex-a76): the bundle's runtime from aarch64 wheels in a Debian
  arm64 root under qemu-aarch64 (pipeline.emulation.arm64; root, a one-off set-up of minutes);
- otherwise (VNNI from a host without it: QEMU cannot model AVX-512; TensorRT), this host, with int8 sums that never
  saturate where its own fused kernels would (edge.isa.must_not_saturate).

`board.emulate`: auto (default) emulates x86 boards when qemu-x86_64 is installed, costing seconds; on also emulates
Arm boards and fails early when it cannot; off never emulates.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass

from edge import isa as int8_isa
from pipeline import PipelineError
from pipeline.emulation import arm64

# QEMU's CPU models whose int8 instructions are a board ISA's (edge.isa.ISAS).
X86_CPU_MODELS = {"avx2": "Haswell", "sse4.2": "Nehalem"}
ARM_CPU_MODELS = {"arm-neon": "cortex-a72", "arm-dotprod": "cortex-a76"}
EMULATE = ("auto", "on", "off")
QEMU_X86_FIX = "apt install qemu-user (Debian's QEMU emulates AVX2)"


@dataclass(frozen=True)
class Arithmetic:
    """How int8 answers are computed for the gate. kind: `host` (this CPU's own kernels), `unsaturated` (this CPU
    with no saturating int8 kernel: float sums of the int8 values) or `emulated` (the board's CPU under QEMU)."""

    kind: str
    board_isa: str
    host_isa: str
    cpu: str | None = None  # the QEMU CPU model, when emulated
    note: str = ""  # why the board was not emulated, where it could have been

    @property
    def emulated(self) -> bool:
        return self.kind == "emulated"

    def describe(self) -> str:
        if self.kind == "emulated":
            return f"the board's: {self.board_isa} emulated by QEMU as {self.cpu}"
        if self.kind == "unsaturated":
            return (f"this host's ({self.host_isa}) with int8 sums that never saturate (float sums of the int8 values, "
                    f"as the board's 32-bit accumulators make them, to within one rounding)")
        return f"this host's own int8 kernels ({self.host_isa})"

    def launch(self, artifact, requirements: list[str]) -> tuple[list[str], dict | None, str]:
        """How to start a Python on the board's emulated CPU (kind emulated) that sees `artifact`: (command, its
        environment or None for this one, the artifact's path there); edge.runners.emulated runs a runner in it."""
        if self.board_isa in X86_CPU_MODELS:
            return x86_python(self.cpu), None, str(artifact)
        return arm64.launcher(self.cpu, artifact, requirements)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "board_isa": self.board_isa, "host_isa": self.host_isa, "cpu": self.cpu,
                "description": self.describe(), **({"note": self.note} if self.note else {})}


def qemu_x86() -> str | None:
    return shutil.which("qemu-x86_64") or shutil.which("qemu-x86_64-static")


def x86_python(cpu: str) -> list[str]:
    """This venv's Python on QEMU's x86 CPU model `cpu` (e.g. Haswell): the command line to start it with."""
    return [qemu_x86(), "-cpu", cpu, sys.executable]


def qemu_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split()
    return out[2] if len(out) > 2 else "?"


def choose(board_isa: str, emulate: str = "auto", host_isa: str | None = None) -> Arithmetic:
    """The arithmetic that judges int8 made for `board_isa` on this host; with emulate=on, an error (one line naming
    the fix) where the board cannot be emulated here."""
    host_isa = host_isa or int8_isa.detect()
    if board_isa == host_isa or emulate == "off" or board_isa == "gpu":
        if emulate == "on" and board_isa != host_isa:
            raise PipelineError(f"board.emulate=on: QEMU cannot model a {board_isa} board; use board.emulate=auto")
        return _not_emulated(board_isa, host_isa)
    if board_isa in X86_CPU_MODELS and _host_is_x86():
        if qemu_x86():
            return Arithmetic("emulated", board_isa, host_isa, X86_CPU_MODELS[board_isa])
        if emulate == "on":
            raise PipelineError(f"board.emulate=on needs qemu-x86_64 to emulate a {board_isa} board: {QEMU_X86_FIX}")
        return _not_emulated(board_isa, host_isa, f"not emulated: qemu-x86_64 is not installed ({QEMU_X86_FIX})")
    if board_isa in ARM_CPU_MODELS:
        if emulate == "on":
            arm64.check_can_prepare()  # one line naming the fix, before any model work
            return Arithmetic("emulated", board_isa, host_isa, ARM_CPU_MODELS[board_isa])
        return _not_emulated(board_isa, host_isa, "not emulated: SET=board.emulate=on judges it on emulated "
                                                  f"{ARM_CPU_MODELS[board_isa]} (root; minutes)")
    if emulate == "on":
        raise PipelineError(f"board.emulate=on: QEMU cannot model a {board_isa} board from this {host_isa} host; "
                            "use board.emulate=auto")
    return _not_emulated(board_isa, host_isa)


def _host_is_x86() -> bool:
    import platform

    return platform.machine().lower() in ("x86_64", "amd64")


def _not_emulated(board_isa: str, host_isa: str, note: str = "") -> Arithmetic:
    if board_isa == "gpu":  # the Jetson target's host reference: ONNX Runtime with its Q/DQ pairs unfused
        return Arithmetic("unsaturated", board_isa, host_isa, note=note or "TensorRT's own engine is built on the board")
    if int8_isa.must_not_saturate(board_isa, host_isa):
        return Arithmetic("unsaturated", board_isa, host_isa,
                          note=note or "this host's fused int8 kernels would saturate sums the board's never do")
    return Arithmetic("host", board_isa, host_isa, note=note)

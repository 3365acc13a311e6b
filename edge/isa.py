"""The CPU's int8 arithmetic (its "int8 ISA"): which instructions int8 kernels multiply-accumulate with.

The same int8 artifact can give different answers on two CPUs. x86 without VNNI multiplies u8×s8
pairs with `vpmaddubsw`, whose 16-bit sums saturate unless the quantizer leaves weights a bit of
headroom (NNCF's overflow fix, ONNX Runtime's reduce_range); VNNI and Arm's dot-product
instructions accumulate in 32 bits and do not. Device side: the host and `./run.sh validate` both
read it (standard library only).
"""
from __future__ import annotations

import functools
import platform
from pathlib import Path

ISAS = {
    "avx512-vnni": "x86 with AVX-512 VNNI (32-bit int8 dot products)",
    "avx-vnni": "x86 with AVX-VNNI (32-bit int8 dot products)",
    "avx2": "x86 with AVX2 and no VNNI (u8×s8 pairs sum in 16 bits and can saturate)",
    "arm-dotprod": "Arm with dot-product instructions (Cortex-A76/A78: Raspberry Pi 5, Jetson Orin)",
    "arm-neon": "Arm without dot-product instructions (Cortex-A72: Raspberry Pi 4)",
    "gpu": "GPU int8 (TensorRT: 32-bit accumulation)",
    "unknown": "a CPU whose int8 instructions could not be read",
}
# ISAs whose int8 kernels can saturate 16-bit intermediate sums: the quantizer must leave headroom.
SATURATING = {"avx2", "unknown"}


def must_sum_exactly(made_for: str, host: str | None = None) -> bool:
    """Whether this host's fused int8 kernels saturate sums that the board's (`made_for`) keep exact.

    Int8 made for a VNNI, Arm or GPU board keeps full 8-bit weights, whose u8×s8 pairs overflow 16 bits on an
    AVX2-only host; the host must then run it with exact int8 sums (the runtime's unfused path) to see the board's
    answers, not its own saturated ones.
    """
    return saturates(host or detect()) and not saturates(made_for)


def _cpu_flags(cpuinfo: str) -> set[str]:
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return flags


def detect(cpuinfo: str | None = None, machine: str | None = None) -> str:
    """This machine's int8 ISA, one of ISAS (or that of the given /proc/cpuinfo text and machine)."""
    if cpuinfo is None and machine is None:
        return _this_machine()
    machine = (machine or platform.machine()).lower()
    flags = _cpu_flags(cpuinfo)
    if machine in ("x86_64", "amd64", "i686", "x86"):
        if "avx512_vnni" in flags:
            return "avx512-vnni"
        if "avx_vnni" in flags:
            return "avx-vnni"
        return "avx2" if "avx2" in flags else "unknown"
    if machine in ("aarch64", "arm64"):
        return "arm-dotprod" if "asimddp" in flags else "arm-neon"
    return "unknown"


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


@functools.lru_cache(maxsize=1)
def _this_machine() -> str:
    return detect(_cpuinfo(), platform.machine())


# The CPU features int8 and float kernels choose their code paths by (XNNPACK, oneDNN, MLAS), in the
# order a runtime label shows them: x86 first, then Arm.
KERNEL_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8",
                   "asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2")


def features(cpuinfo: str | None = None) -> list[str]:
    """The KERNEL_FEATURES this CPU reports (or the given /proc/cpuinfo text): what its kernels can use."""
    flags = _cpu_flags(_cpuinfo() if cpuinfo is None else cpuinfo)
    return [f for f in KERNEL_FEATURES if f in flags]


def check(isa: str) -> str:
    if isa not in ISAS:
        from edge.errors import UserError

        raise UserError(f"unknown int8 ISA {isa!r}; use auto or one of {', '.join(ISAS)}")
    return isa


def saturates(isa: str) -> bool:
    return isa in SATURATING


def describe(isa: str) -> str:
    return f"{isa} ({ISAS.get(isa, 'unknown')})"

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
    "sse4.2": "x86 with SSE4.2 and no AVX2 (u8×s8 pairs sum in 16 bits and can saturate)",
    "arm-dotprod": "Arm with dot-product instructions (Cortex-A76/A78: Raspberry Pi 5, Jetson Orin)",
    "arm-neon": "Arm without dot-product instructions (Cortex-A72: Raspberry Pi 4)",
    "gpu": "GPU int8 (TensorRT: 32-bit accumulation)",
    "unknown": "a CPU whose int8 instructions could not be read",
}
# ISAs whose int8 kernels can saturate 16-bit intermediate sums: the quantizer must leave headroom.
SATURATING = {"avx2", "sse4.2", "unknown"}


def must_not_saturate(made_for: str, host: str | None = None) -> bool:
    """Whether this host's fused int8 kernels saturate sums that the board's (`made_for`) never do.

    Int8 made for a VNNI, Arm or GPU board keeps full 8-bit weights, whose u8×s8 pairs overflow 16 bits on an
    AVX2-only host; the host must then run it with unsaturated int8 sums (the runtime's unfused path: float sums of
    the int8 values) to see the board's answers, not its own saturated ones. Those float sums equal the board's int32
    sums to within float rounding, which can still move a value lying on a rounding tie at the next requantizer by one
    step: unsaturated, not bit-exact.
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
        if "avx2" in flags:
            return "avx2"
        return "sse4.2" if "sse4_2" in flags else "unknown"
    if machine in ("aarch64", "arm64"):
        return "arm-dotprod" if "asimddp" in flags else "arm-neon"
    return "unknown"


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


# /proc/cpuinfo name -> numpy's name for the same CPUID feature. numpy reads CPUID itself when it loads, so it sees
# the CPU a process really runs on: under QEMU user mode (`qemu-x86_64 -cpu Haswell`, how `make test-isa` and the
# emulated gate run int8) /proc/cpuinfo is still the host's, while CPUID, and so every int8 kernel's choice, is the
# emulated CPU's.
_NUMPY_NAMES = {"sse4_2": "SSE42", "avx2": "AVX2", "fma": "FMA3", "avx512f": "AVX512F", "avx512_vnni": "AVX512VNNI",
                "avx512_bf16": "AVX512BF16", "asimd": "ASIMD", "asimdhp": "ASIMDHP", "asimddp": "ASIMDDP", "sve": "SVE"}


def _numpy_cpu_features() -> dict[str, bool]:
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__  # numpy 1.x
        except ImportError:
            return {}
    return dict(__cpu_features__)


def as_cpuid_sees(flags: set[str], cpuid: dict[str, bool]) -> set[str]:
    """`flags` (from /proc/cpuinfo) as this process's CPUID (`cpuid`, numpy's names) answers them. Where CPUID denies
    a feature cpuinfo lists, the process runs on another CPU than the kernel's (an emulator): CPUID alone is then
    believed, and the features it cannot name (avx_vnni, i8mm) count as absent."""
    known = {f: cpuid[n] for f, n in _NUMPY_NAMES.items() if n in cpuid}
    if any(f in flags and not present for f, present in known.items()):
        return {f for f, present in known.items() if present}
    return flags | {f for f, present in known.items() if present}


@functools.lru_cache(maxsize=1)
def _this_machine_flags() -> frozenset[str]:
    return frozenset(as_cpuid_sees(_cpu_flags(_cpuinfo()), _numpy_cpu_features()))


def _flags_text(flags) -> str:
    return "flags\t: " + " ".join(sorted(flags))


@functools.lru_cache(maxsize=1)
def _this_machine() -> str:
    return detect(_flags_text(_this_machine_flags()), platform.machine())


# The CPU features int8 and float kernels choose their code paths by (XNNPACK, oneDNN, MLAS), in the
# order a runtime label shows them: x86 first, then Arm.
KERNEL_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8",
                   "asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2")


def features(cpuinfo: str | None = None) -> list[str]:
    """The KERNEL_FEATURES this CPU reports (or the given /proc/cpuinfo text): what its kernels can use."""
    flags = _this_machine_flags() if cpuinfo is None else _cpu_flags(cpuinfo)
    return [f for f in KERNEL_FEATURES if f in flags]


def check(isa: str) -> str:
    if isa not in ISAS:
        from edge.errors import UserError

        raise UserError(f"unknown int8 ISA {isa!r}; use auto or one of {', '.join(ISAS)}")
    return isa


# Runtimes whose fused int8 kernels widen before they multiply on a saturating ISA: ONNX Runtime's MLAS on SSE4.x
# (pmaddwd on 16-bit values) gave the full 207 of a u8 255 x s8 127 layer on emulated Nehalem, where OpenVINO's
# oneDNN saturated (make test-isa). The quantizers still leave headroom for the ISA, whichever runtime runs it.
WIDENING = {("onnxruntime", "sse4.2")}


def saturates(isa: str, runtime: str | None = None) -> bool:
    """Whether int8 kernels on `isa` can saturate 16-bit pair sums (in `runtime`'s fused kernels, when given)."""
    return isa in SATURATING and (runtime, isa) not in WIDENING


def describe(isa: str) -> str:
    return f"{isa} ({ISAS.get(isa, 'unknown')})"

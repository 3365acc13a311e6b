"""Raspberry Pi 4/5 (64-bit OS): the TFLite target's artifacts with a Pi profile (XNNPACK, 4 threads).

The runtime on the Pi is ai-edge-litert (aarch64 wheels); tflite-runtime 2.14 also works as a
fallback, but ran int8 about 40x slower here and needs numpy < 2.
"""
from __future__ import annotations

from targets.tflite import TFLiteTarget


class RaspberryPiTarget(TFLiteTarget):
    """The same converter, quantizer, runner and census as tflite; the Pi's own profile."""

    name = "rpi"


TARGET = RaspberryPiTarget()

"""Deployment targets: one module each, named in one table.

Adding a target = one module implementing `targets.base.Target` and one line here.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from edge.errors import UserError
from targets.base import MissingRuntime  # noqa: F401  (re-exported)

TARGETS: dict[str, str] = {
    "openvino": "targets.openvino",
    "onnx": "targets.onnx",
    "jetson": "targets.jetson",
    "tflite": "targets.tflite",
    "rpi": "targets.rpi",
}


class UnknownTarget(UserError):
    pass


def get_target(name: str) -> ModuleType:
    """The target module for `name`; one-line error listing the valid names."""
    if name not in TARGETS:
        raise UnknownTarget(f"unknown target {name!r}; valid targets: {', '.join(sorted(TARGETS))}")
    return importlib.import_module(TARGETS[name])

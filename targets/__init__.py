"""Deployment targets: one module each, named in one table.

Adding a target = one module defining a `targets.base.Target` subclass and its instance `TARGET`,
and one line here; the contract test (tests/test_target_contract.py) then covers it. This file imports no target and
no runner: a stage that only names the target does not take the runtimes' code into its source (pipeline.sources).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from edge.errors import UserError

if TYPE_CHECKING:  # a name for the annotation only: importing the interface would bring in the runners
    from targets.base import Target

TARGETS: dict[str, str] = {
    "openvino": "targets.openvino",
    "onnx": "targets.onnx",
    "jetson": "targets.jetson",
    "tflite": "targets.tflite",
    "rpi": "targets.rpi",
}
DEFAULT_TARGET = "openvino"  # the Makefile's TARGET default says the same


class UnknownTarget(UserError):
    pass


def get_target(name: str) -> Target:
    """The target named `name`; one-line error listing the valid names."""
    if name not in TARGETS:
        raise UnknownTarget(f"unknown target {name!r}; valid targets: {', '.join(sorted(TARGETS))}")
    return importlib.import_module(TARGETS[name]).TARGET

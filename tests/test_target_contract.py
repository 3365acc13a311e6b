"""The target contract, for every target in targets.TARGETS: a new target is tested by being in the table.

Each target converts the tiny b0, quantizes it, loads both artifacts in its own runtime and
describes them; the runtime's float must match PyTorch, its int8 must be int8 and still agree
with float. A target whose converters are not installed here is skipped with what to install.
"""
from __future__ import annotations

import importlib

import pytest

import targets
from targets.base import Target
from edge.runners import RUNTIMES
from pipeline.ship.report import PARITY_RTOL
from pipeline.scores import agreement, parity
from conftest import int8_isa, target_int8_runner


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_target_declares_the_interface(name):
    target = targets.get_target(name)
    assert isinstance(target, Target) and target.name == name
    assert importlib.import_module(targets.TARGETS[name]).TARGET is target
    assert target.device_runtime in RUNTIMES  # the board loads it through the one runner registry
    assert target.artifact_suffix.startswith(".") and target.device_install and target.higher_precision
    assert target.requires and target.qat_preset in (None, "mixed", "performance")


@pytest.mark.int8
@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_convert_quantize_run_describe(name, tiny_arrays, target_artifacts):
    target, t = targets.get_target(name), tiny_arrays
    made = target_artifacts(name)  # skips with the install line when the runtime is missing
    assert made["fp32"].suffix == made["int8"].suffix == target.artifact_suffix

    float_runner = target.runner(made["fp32"], threads=1)
    float_logits = float_runner.infer(t["test"])
    assert float_logits.shape == t["ref"].shape and isinstance(float_runner.runtime, str) and float_runner.threads >= 1
    assert parity(float_logits, t["ref"])["relative_diff"] < PARITY_RTOL  # the gate's own conversion tolerance

    int8_runner = target_int8_runner(target, made["int8"])  # on an emulated CPU under make test-isa
    int8_logits = int8_runner.infer(t["test"])
    assert agreement(int8_logits, float_logits) >= 0.85  # the tiny model has learnt the colours
    assert isinstance(int8_runner.executed_precisions(), dict)

    float_ops, int8_ops = target.describe(made["fp32"]), target.describe(made["int8"])
    assert float_ops["compute_ops_int8_input"] == 0 and float_ops["int8_macs_share"] == 0
    assert int8_ops["compute_ops"] == float_ops["compute_ops"] > 50
    assert int8_ops["compute_ops_int8_input"] >= 49 and int8_ops["int8_macs_share"] > 0.9, int8_ops


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_optional_capabilities_answer_or_decline(name, tiny_arrays, target_artifacts):
    """layer_errors and the accuracy-aware search: declared on every target, with defaults."""
    target = targets.get_target(name)
    made = target_artifacts(name)
    rows = target.layer_errors(made["fp32"], made["int8"], tiny_arrays["calib"][:1], worst=3)
    assert rows is None or (len(rows) == 3 and all(r["relative_error"] >= 0 for r in rows))
    if target.own_accuracy_search:
        assert target.float_compute_layers(made["fp32"]) and len(target.float_compute_layers(made["int8"])) < 40
    else:
        with pytest.raises(NotImplementedError):
            target.quantize_accuracy_aware(made["fp32"], tiny_arrays["calib"], None, None, None, 1.0, made["fp32"], isa=int8_isa())

"""The deploy chain as data: one module per stage, in the order of one table.

    model -> calibration -> float -> int8 [-> qat | auto] -> validate -> report (-> bundle, when the gate holds)

Each stage module declares what it needs (NEEDS: earlier stages by name; "shipped" is the int8 stage QUANT picks), its
cache key (`key(ctx, inputs)`: its config fields and what it reads) and `run(ctx, inputs, out) -> result`, writing
into `out`; pipeline.chain runs them through the run folder, which skips a stage whose key and files are unchanged.
The key also holds the digest of the source the stage imports (pipeline.sources), so a new recipe redoes what the
old one made and a reworded report redoes only the report.

The CLI's stage commands, the Makefile's help, choose, bench and the tests read this table. Standard library only:
`--help` stays fast; the stage modules (PyTorch, NNCF) are imported when a stage runs.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class StageEntry:
    module: str  # the module that runs it (NEEDS, key, run)
    help: str  # what it does, for --help
    targeted: bool = True  # it calls the target: the target's module is part of its source (pipeline.chain.code_digest)
    cached: bool = True  # False: run every time (the report: milliseconds, and it says what the run folder holds now)


STAGES: dict[str, StageEntry] = {
    "model": StageEntry("pipeline.stages.model", "load the float model and its weights into the run folder", False),
    "calibration": StageEntry("pipeline.stages.calibrate", "choose and preprocess the calibration set", False),
    "float": StageEntry("pipeline.stages.convert", "convert the float model to the target's float artifact"),
    "int8": StageEntry("pipeline.stages.quantize", "post-training quantization to the target's int8 artifact"),
    "qat": StageEntry("pipeline.stages.qat", "QUANT=qat: quantization-aware training from the PTQ initialisation"),
    "auto": StageEntry("pipeline.stages.auto", "QUANT=auto: PTQ with the most sensitive layers kept in float until MAX_DROP holds"),
    "validate": StageEntry("pipeline.stages.validate", "run float and int8 in the target runtime on DATA: accuracy, agreement, latency"),
    "report": StageEntry("pipeline.stages.report", "write report.json/report.md, apply the MAX_DROP gate and, when it holds, the bundle",
                         cached=False),
}
SHIPPED = {"ptq": "int8", "qat": "qat", "auto": "auto"}  # QUANT -> the stage whose int8 artifact is validated and shipped


def module(name: str):
    return importlib.import_module(STAGES[name].module)


def needs(name: str, quant_mode: str) -> dict[str, str]:
    """What stage `name` reads, as {its name for the input: the stage that makes it}."""
    return {need: SHIPPED[quant_mode] if need == "shipped" else need for need in module(name).NEEDS}

"""The deploy chain, in order: one table for the stages' names, what each does and the Deploy method that runs it.
The CLI's stage commands, run_until and the tests read it (standard library only: the CLI's --help stays fast)."""
from __future__ import annotations

# name -> (what it does, for --help; the Deploy method that runs it)
STAGES = {
    "model": ("load the float model and its weights into the run folder", "model"),
    "calibration": ("choose and preprocess the calibration set", "calibration"),
    "float": ("convert the float model to the target's float artifact", "float_artifact"),
    "int8": ("post-training quantization to the target's int8 artifact", "int8_artifact"),
    "qat": ("QUANT=qat: quantization-aware training from the PTQ initialisation", "qat"),
    "auto": ("QUANT=auto: PTQ with the most sensitive layers kept in float until MAX_DROP holds", "auto"),
    "validate": ("run float and int8 in the target runtime on DATA: accuracy, agreement, latency", "validation"),
    "report": ("write report.json/report.md and apply the MAX_DROP gate", "report"),
}

"""A stage's cache key follows its own source: a reworded report redoes only what carries its words."""
from __future__ import annotations

import shutil
from pathlib import Path

from pipeline import sources, stages
from pipeline.chain import stage_sources

ROOT = Path(__file__).resolve().parent.parent
CACHED = [name for name, entry in stages.STAGES.items() if entry.cached] + ["bundle"]


def _digests(root: Path, target_module: str) -> dict[str, str]:
    return {stage: sources.digest(*stage_sources(stage, target_module), root=root) for stage in CACHED}


def _changed(tmp_path: Path, edited: str, target_module: str = "targets.openvino") -> set[str]:
    """The stages whose key changes when `edited` (a file under the project) gains a comment."""
    copy = tmp_path / "src"
    for package in ("pipeline", "targets", "calibration", "edge"):
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    before = _digests(copy, target_module)
    with open(copy / edited, "a") as f:
        f.write("\n# reworded\n")
    after = _digests(copy, target_module)
    return {stage for stage in before if before[stage] != after[stage]}


def test_a_reworded_report_redoes_only_the_bundle(tmp_path):
    assert _changed(tmp_path, "pipeline/ship/report.py") == {"bundle"}
    assert _changed(tmp_path / "edge-report", "edge/report.py") == {"bundle"}


def test_a_changed_stage_redoes_itself_and_not_what_comes_before(tmp_path):
    assert _changed(tmp_path, "pipeline/stages/validate.py") == {"validate"}  # later stages follow by its digest
    assert _changed(tmp_path / "q", "pipeline/stages/quantize.py") == {"int8"}
    assert _changed(tmp_path / "c", "calibration/sets.py") == {"calibration", "validate"}  # validate: the held-out frames
    assert _changed(tmp_path / "ctx", "pipeline/stages/context.py") == set(CACHED)  # what every stage reads


def test_a_changed_target_redoes_its_artifacts_and_what_follows(tmp_path):
    assert _changed(tmp_path, "targets/openvino.py") == {"float", "int8", "qat", "auto", "validate", "bundle"}
    assert _changed(tmp_path / "other", "targets/tflite.py") == set()  # another target's module
    assert _changed(tmp_path / "runner", "edge/runners/openvino.py") >= {"float", "int8", "validate", "bundle"} and \
        "model" not in _changed(tmp_path / "runner2", "edge/runners/openvino.py")

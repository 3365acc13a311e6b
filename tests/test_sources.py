"""A stage's cache key follows its own source: a reworded report redoes only what carries its words."""
from __future__ import annotations

import shutil
from pathlib import Path

from pipeline import sources
from pipeline.deploy import STAGE_SOURCES

ROOT = Path(__file__).resolve().parent.parent


def _digests(root: Path, target_module: str) -> dict[str, str]:
    targeted = {"float", "int8", "qat", "auto", "validate", "bundle"}
    return {stage: sources.digest(*entries, *((target_module,) if stage in targeted else ()), root=root)
            for stage, entries in STAGE_SOURCES.items()}


def _changed(tmp_path: Path, edited: str, target_module: str = "targets.openvino") -> set[str]:
    """The stages whose key changes when `edited` (a file under the project) gains a comment."""
    copy = tmp_path / "src"
    for package in ("pipeline", "targets", "edge"):
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    before = _digests(copy, target_module)
    with open(copy / edited, "a") as f:
        f.write("\n# reworded\n")
    after = _digests(copy, target_module)
    return {stage for stage in before if before[stage] != after[stage]}


def test_a_reworded_report_redoes_only_the_bundle(tmp_path):
    assert _changed(tmp_path, "pipeline/report.py") == {"bundle"}
    assert _changed(tmp_path / "edge-report", "edge/report.py") == {"bundle"}


def test_a_changed_target_redoes_its_artifacts_and_what_follows(tmp_path):
    assert _changed(tmp_path, "targets/openvino.py") == {"float", "int8", "qat", "auto", "validate", "bundle"}
    assert _changed(tmp_path / "other", "targets/tflite.py") == set()  # another target's module
    assert _changed(tmp_path / "runner", "edge/runners.py") >= {"float", "int8", "validate"} and \
        "model" not in _changed(tmp_path / "runner2", "edge/runners.py")
    assert _changed(tmp_path / "stages", "pipeline/deploy.py") == set(STAGE_SOURCES)  # the stage definitions themselves

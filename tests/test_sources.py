"""A stage's cache key follows its own source: a reworded report redoes only what carries its words."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline import sources, stages
from pipeline.stages.keys import stage_sources

ROOT = Path(__file__).resolve().parent.parent
CACHED = [name for name, entry in stages.STAGES.items() if entry.cached] + ["bundle"]


def _digests(root: Path, target_module: str) -> dict[str, str]:
    return {stage: sources.digest(*stage_sources(stage, target_module), root=root) for stage in CACHED}


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """The project's source, copied once: each check edits one file and puts it back."""
    root = tmp_path_factory.mktemp("src")
    for package in ("pipeline", "targets", "calibration", "edge"):
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _changed(copy: Path, edited: str, target_module: str = "targets.openvino") -> set[str]:
    """The stages whose key changes when `edited` (a file under the project) gains a comment."""
    before, text = _digests(copy, target_module), (copy / edited).read_text()
    try:
        (copy / edited).write_text(text + "\n# reworded\n")
        after = _digests(copy, target_module)
    finally:
        (copy / edited).write_text(text)
    return {stage for stage in before if before[stage] != after[stage]}


def test_a_reworded_report_redoes_only_the_bundle(copy):
    assert _changed(copy, "pipeline/ship/report.py") == {"bundle"}
    assert _changed(copy, "edge/report.py") == {"bundle"}


def test_a_changed_stage_redoes_itself_and_not_what_comes_before(copy):
    assert _changed(copy, "pipeline/stages/validate.py") == {"validate"}  # later stages follow by its digest
    assert _changed(copy, "pipeline/stages/quantize.py") == {"int8"}
    assert _changed(copy, "calibration/sets.py") == {"calibration", "validate"}  # validate: the held-out frames
    assert _changed(copy, "pipeline/stages/context.py") == set(CACHED)  # what every stage reads


def test_a_changed_target_redoes_its_artifacts_and_what_follows(copy):
    assert _changed(copy, "targets/openvino.py") == {"float", "int8", "qat", "auto", "validate", "bundle"}
    assert _changed(copy, "targets/tflite.py") == set()  # another target's module
    runner = _changed(copy, "edge/runners/openvino.py")
    assert runner >= {"float", "int8", "validate", "bundle"} and not runner & {"model", "calibration"}

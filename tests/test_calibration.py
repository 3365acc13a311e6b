"""Calibration sets: stratified, never random unless asked, corrupt files skipped."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from calibration import sets as calibration
from conftest import write_folder
from edge.preprocess import Preprocess
from pipeline import PipelineError

PRE = Preprocess(32, 36)


def test_stratified_by_class(tmp_path):
    write_folder(tmp_path, per_class=10)
    chosen = calibration.choose(tmp_path, 8)
    assert Counter(p.parent.name for p in chosen) == {"red": 2, "green": 2, "blue": 2, "yellow": 2}
    assert calibration.choose(tmp_path, 8, seed=1) != chosen  # another seed, another sample


def test_unlabelled_folder_and_more_than_available(tmp_path):
    write_folder(tmp_path, per_class=2)
    for p in list(tmp_path.rglob("*.png")):
        p.rename(tmp_path / p.name)
    chosen = calibration.choose(tmp_path, 100)
    assert len(chosen) == 8


def test_build_preprocesses_and_skips_corrupt(tmp_path):
    write_folder(tmp_path, per_class=3)
    (tmp_path / "red" / "broken.png").write_bytes(b"garbage")
    calib = calibration.build(tmp_path, 13, PRE)
    assert calib.batch.shape == (12, 3, 32, 32) and calib.batch.dtype == np.float32
    assert len(calib.skipped) == 1 and not calib.random
    assert calib.summary() == {"source": str(tmp_path), "count": 12, "random": False, "skipped": 1}


def test_random_only_by_name(tmp_path):
    calib = calibration.build("random", 4, PRE)
    assert calib.random and calib.batch.shape == (4, 3, 32, 32) and calib.summary()["source"] == "random"
    with pytest.raises(PipelineError, match="does not exist"):
        calibration.build(tmp_path / "typo", 4, PRE)  # a missing folder is an error, never random data


def test_all_corrupt_is_an_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jpg").write_bytes(b"junk")
    with pytest.raises(PipelineError, match="no readable images"):
        calibration.build(tmp_path, 4, PRE)

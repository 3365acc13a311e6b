"""The gate's statistics: paired intervals for the int8 drop, Wilson intervals for agreement, the verdict."""
from __future__ import annotations

import numpy as np
import pytest

from edge.metrics import accuracy, drop_interval, fidelity, images_to_resolve, paired_counts, ranked, wilson


def counts(both_right, float_only, int8_only, both_wrong):
    return {"both_right": both_right, "float_only": float_only, "int8_only": int8_only, "both_wrong": both_wrong}


def test_wilson_matches_published_values():
    # Newcombe (1998), proportions paper: 0/10 -> 0 to 0.2775; 1/29 -> 0.0061 to 0.1718.
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(1, 29) == pytest.approx((0.0061, 0.1718), abs=1e-4)


def test_paired_counts_from_logits():
    labels = np.array([0, 1, 2, 3])
    eye = np.eye(4)
    float_logits = eye[[0, 1, 2, 0]]  # right, right, right, wrong
    int8_logits = eye[[0, 2, 2, 3]]  # right, wrong, right, right
    assert paired_counts(float_logits, int8_logits, labels) == counts(2, 1, 1, 0)


def test_one_flip_in_three_is_not_a_33_point_loss():
    f = fidelity(counts(2, 1, 0, 0), agree=2, agree_images=3, max_drop=1.0)
    assert f["drop_points"] == pytest.approx(33.33, abs=0.01)
    assert f["verdict"] == "inconclusive" and f["drop_ci95_points"][0] < 0 < f["drop_ci95_points"][1]
    assert "too few images" in f["reason"] and f["images_to_resolve"] > 3


def test_verdicts_on_clear_cases():
    assert fidelity(counts(4500, 10, 10, 480), 4990, 5000, 1.0)["verdict"] == "passed"
    failed = fidelity(counts(300, 120, 5, 75), 375, 500, 1.0)
    assert failed["verdict"] == "failed" and failed["drop_ci95_points"][0] > 1.0 and "the loss is real" in failed["reason"]
    assert fidelity(counts(100, 4, 5, 27), 127, 136, 1.0)["verdict"] == "inconclusive"


def test_images_to_resolve_is_about_right():
    c = counts(120, 3, 2, 11)  # 136 images, a small measured gain... in fact a 0.7-point drop
    need = images_to_resolve(c, max_drop=5.0)
    assert need is not None and need > 136
    n = sum(c.values())
    scaled = {k: v * need / n for k, v in c.items()}
    assert 100 * drop_interval(scaled)[2] <= 5.0  # that many images at the same rates resolve it
    smaller = {k: v * 0.9 * need / n for k, v in c.items()}
    assert 100 * drop_interval(smaller)[2] > 5.0  # and not many fewer
    # A drop sitting on MAX_DROP is never resolved.
    assert images_to_resolve(counts(80, 11, 10, 0), max_drop=100 / 101) is None


def test_interval_covers_the_true_drop():
    """Simulated paired outcomes with a known drop: the 95 % interval covers it about 95 % of the time."""
    rng = np.random.default_rng(0)
    p = np.array([0.70, 0.06, 0.03, 0.21])  # both right, float only, int8 only, both wrong: true drop 3 points
    for n in (30, 136, 1000):
        hits = 0
        for _ in range(1000):
            a, b, c, d = rng.multinomial(n, p)
            _, lo, hi = drop_interval(counts(a, b, c, d))
            hits += lo <= 0.03 <= hi
        assert 0.93 <= hits / 1000 <= 0.995, (n, hits)


def test_tied_scores_rank_as_argmax_breaks_them():
    """Quantized int8 logits tie; the camera loop's top-k and validation's accuracy break ties as argmax does."""
    logits = np.array([[0.1, 1.5726, 1.5726, -3.0]] * 40 + [[2.0, 2.0, 2.0, 2.0]] * 40, np.float32)
    assert (ranked(logits)[:, 0] == logits.argmax(1)).all()
    assert ranked(logits[0]).tolist() == [1, 2, 0, 3]
    # a camera frame's softmax with two tied int8 logits: numpy's default (SIMD) sort put class 3 first here
    assert ranked(np.array([0.05219287, 0.00421583, 0.47179565, 0.47179565])).tolist() == [2, 3, 0, 1]
    assert accuracy(logits, logits.argmax(1))["top1"] == 1.0

"""Accuracy, agreement and the accuracy gate, on logits (numpy only: host and board share them)."""
from __future__ import annotations

import math

import numpy as np


def ranked(scores: np.ndarray) -> np.ndarray:
    """Class indices best first along the last axis; a tie goes to the lower index, as argmax breaks it.

    int8 logits tie often (they are quantized), and numpy's default sort is not stable: the camera
    loop's top-1 could then differ from validation's argmax on the same frame.
    """
    return np.argsort(-np.asarray(scores), axis=-1, kind="stable")


def topk_hits(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    k = min(k, logits.shape[1])
    top = ranked(logits)[:, :k]
    return (top == labels[:, None]).any(axis=1)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> dict:
    if len(labels) == 0:
        return {"top1": None, "top5": None}
    return {"top1": float(topk_hits(logits, labels, 1).mean()), "top5": float(topk_hits(logits, labels, 5).mean())}


def agreement(a: np.ndarray, b: np.ndarray) -> float | None:
    """Fraction of images on which two models' top-1 classes agree."""
    if len(a) == 0:
        return None
    return float((a.argmax(1) == b.argmax(1)).mean())


def agreeing(a: np.ndarray, b: np.ndarray) -> int:
    """How many rows' top-1 classes the two logit arrays share."""
    return int((np.asarray(a).argmax(1) == np.asarray(b).argmax(1)).sum())


def parity(artifact: np.ndarray, reference: np.ndarray) -> dict:
    """How far a float artifact's logits are from the reference model's."""
    diff = float(np.abs(artifact - reference).max())
    scale = max(float(np.abs(reference).max()), 1e-12)
    return {"max_abs_diff": diff, "relative_diff": diff / scale, "top1_agreement": agreement(artifact, reference)}


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


# -- the fidelity gate ---------------------------------------------------------------------------
# int8 and float classify the same images, so their outcomes are paired: what matters is how many
# images one gets right and the other wrong. The drop's 95 % interval is Newcombe's hybrid score
# interval for a difference of paired proportions (method 10, Stat. Med. 1998), which stays sensible
# for a handful of images where the normal approximation says "±0".
Z95 = 1.959964
MAX_IMAGES_TO_SUGGEST = 1_000_000


def wilson(k: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n."""
    if n <= 0:
        return 0.0, 1.0
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(max(p * (1 - p) / n + z2 / (4 * n * n), 0.0)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_counts(float_logits: np.ndarray, int8_logits: np.ndarray, labels: np.ndarray) -> dict:
    """Images both models get right, only float, only int8, neither (top-1)."""
    f = float_logits.argmax(1) == labels
    q = int8_logits.argmax(1) == labels
    return {"both_right": int((f & q).sum()), "float_only": int((f & ~q).sum()),
            "int8_only": int((~f & q).sum()), "both_wrong": int((~f & ~q).sum())}


def drop_interval(c: dict, z: float = Z95) -> tuple[float, float, float]:
    """float top-1 minus int8 top-1 (fractions) and its 95 % interval, from paired counts."""
    a, b, cc, d = c["both_right"], c["float_only"], c["int8_only"], c["both_wrong"]
    n = a + b + cc + d
    if n == 0:
        return 0.0, -1.0, 1.0
    p1, p2 = (a + b) / n, (a + cc) / n
    l1, u1 = wilson(a + b, n, z)
    l2, u2 = wilson(a + cc, n, z)
    denom = (a + b) * (cc + d) * (a + cc) * (b + d)
    num = a * d - b * cc
    if num > 0:  # Newcombe's continuity correction of the correlation
        num = max(num - n / 2, 0.0)
    phi = num / math.sqrt(denom) if denom > 0 else 0.0
    drop = p1 - p2
    lo = drop - math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    hi = drop + math.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    return drop, max(lo, -1.0), min(hi, 1.0)


def _verdict(lo_points: float, hi_points: float, max_drop: float) -> str:
    if hi_points <= max_drop:
        return "passed"
    if lo_points > max_drop:
        return "failed"
    return "inconclusive"


def images_to_resolve(c: dict, max_drop: float) -> int | None:
    """Roughly how many images would make the verdict conclusive if the paired rates stayed as measured."""
    n = sum(c.values())
    if n == 0:
        return None

    def verdict_at(total: float) -> str:
        scaled = {k: v * total / n for k, v in c.items()}
        _, lo, hi = drop_interval(scaled)
        return _verdict(100 * lo, 100 * hi, max_drop)

    if verdict_at(MAX_IMAGES_TO_SUGGEST) == "inconclusive":
        return None  # the measured drop sits on MAX_DROP: no sample size settles it
    lo, hi = n, MAX_IMAGES_TO_SUGGEST
    while hi - lo > max(1, lo // 50):
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if verdict_at(mid) != "inconclusive" else (mid, hi)
    return int(hi)


def fidelity(counts: dict, agree: int, agree_images: int, max_drop: float) -> dict:
    """The gate's accuracy verdict: passed, failed (the loss is real and beyond MAX_DROP) or inconclusive.

    passed: the whole 95 % interval of the drop is within MAX_DROP; failed: the whole interval is
    beyond it; otherwise too few images resolve MAX_DROP, and `images_to_resolve` says about how many would.
    """
    drop, lo, hi = drop_interval(counts)
    verdict = _verdict(100 * lo, 100 * hi, max_drop)
    result = {
        "verdict": verdict,
        "max_drop_points": max_drop,
        "drop_points": 100 * drop,
        "drop_ci95_points": [100 * lo, 100 * hi],
        "paired": counts,
        "images": sum(counts.values()),
        "agreement": agree / agree_images if agree_images else None,
        "agreement_ci95": list(wilson(agree, agree_images)) if agree_images else None,
        "agreement_images": agree_images,
        "images_to_resolve": images_to_resolve(counts, max_drop) if verdict == "inconclusive" else None,
    }
    result["reason"] = fidelity_reason(result)
    return result


def fidelity_reason(f: dict) -> str:
    lo, hi = f["drop_ci95_points"]
    span = (f"int8 top-1 drop {f['drop_points']:+.2f} points against float (95 % interval {lo:+.2f} to {hi:+.2f}) "
            f"on {f['images']} images")
    if f["verdict"] == "passed":
        return f"{span}: within MAX_DROP={f['max_drop_points']:g}"
    if f["verdict"] == "failed":
        return f"{span}: the loss is real and more than MAX_DROP={f['max_drop_points']:g}"
    need = f["images_to_resolve"]
    more = f"about {need} images would resolve it" if need else "the drop sits on MAX_DROP, so more images will not resolve it"
    return f"{span}: too few images to tell whether it is within MAX_DROP={f['max_drop_points']:g}; {more}"


def ships(verdict: str, strict: bool) -> bool:
    """Whether an artifact with this verdict ships: passed always, inconclusive unless strict."""
    return verdict == "passed" or (verdict == "inconclusive" and not strict)

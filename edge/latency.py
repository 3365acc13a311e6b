"""Latency measured the same way for every runtime: batch 1, warm-up, then percentiles."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np


def percentiles(samples_ms: list[float] | np.ndarray) -> dict:
    """p50/p90/p99 and mean in milliseconds, plus images/s at batch 1."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        return {"p50": None, "p90": None, "p99": None, "mean": None, "runs": 0, "throughput_fps": None}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(a.mean()),
        "runs": int(a.size),
        "throughput_fps": float(1000.0 / a.mean()),
    }


def measure(infer: Callable[[np.ndarray], object], sample: np.ndarray, warmup: int = 10, runs: int = 100) -> dict:
    """Time `infer(sample)` (a batch of one) `runs` times after `warmup` untimed calls."""
    for _ in range(warmup):
        infer(sample)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        infer(sample)
        times.append((time.perf_counter() - t0) * 1000.0)
    return percentiles(times)

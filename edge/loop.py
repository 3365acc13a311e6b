"""The camera loop: newest frame -> preprocess -> infer -> top-k -> JSON line / MQTT / overlay, with live stats.

`latency_ms` is the work spent on a frame (preprocessing, wherever it ran, + inference + top-k);
`age_ms` is the time from capture to decision, waiting included.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from edge.latency import percentiles
from edge.metrics import softmax


@dataclass(frozen=True)
class LoopOptions:
    topk: int = 3
    smooth: int = 0  # average probabilities over about this many frames (exponential); 0 = off
    headless: bool = True
    max_frames: int = 0  # stop after this many classified frames; 0 = until the source ends
    stats_every: float = 5.0  # seconds between live statistics lines on stderr; 0 = none


class Stats:
    """Recent timings (for live percentiles) and totals (for the summary)."""

    def __init__(self, window: int = 10000):
        self.series = {k: deque(maxlen=window) for k in ("age_ms", "preprocess_ms", "inference_ms", "latency_ms")}
        self.classified = 0
        self.t_start = time.monotonic()

    def add(self, record: dict) -> None:
        self.classified += 1
        for key, values in self.series.items():
            values.append(record[key])

    def fps(self) -> float:
        elapsed = time.monotonic() - self.t_start
        return self.classified / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        parts = [f"{self.fps():.1f} fps"]
        for key, values in self.series.items():
            if values:
                p = np.percentile(np.asarray(values), [50, 99])
                parts.append(f"{key[:-3]} p50 {p[0]:.1f} / p99 {p[1]:.1f} ms")
        return " | ".join(parts)

    def summary(self, counts: dict) -> dict:
        return {
            "classified": self.classified,
            "fps": round(self.fps(), 2),
            "seconds": round(time.monotonic() - self.t_start, 2),
            **counts,
            **{key: {k: round(v, 3) for k, v in percentiles(list(values)).items() if k in ("p50", "p90", "p99", "mean") and v is not None}
               for key, values in self.series.items()},
        }


class Display:
    """An overlay window where a display exists; otherwise nothing (headless)."""

    def __init__(self, enabled: bool, log: Callable[[str], None]):
        self.enabled = enabled
        if enabled:
            try:
                cv2.namedWindow("effnet-edge", cv2.WINDOW_NORMAL)
            except cv2.error:
                log("no display (or OpenCV built without GUI): running headless")
                self.enabled = False

    def show(self, image: np.ndarray, record: dict) -> bool:
        """Draw the top-k; False when the user closed the window or pressed q/Esc."""
        if not self.enabled:
            return True
        canvas = image.copy()
        for i, item in enumerate(record["topk"]):
            text = f"{item['label']}: {item['score']:.2f}"
            cv2.putText(canvas, text, (10, 30 + 28 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 255, 0), 2)
        cv2.putText(canvas, f"{record['latency_ms']:.1f} ms", (10, canvas.shape[0] - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 2)
        cv2.imshow("effnet-edge", canvas)
        return cv2.waitKey(1) & 0xFF not in (ord("q"), 27)


def run_loop(runner, preprocess, names: list[str], grabber, opts: LoopOptions, emit: Callable[[dict], None],
             stop: threading.Event, log: Callable[[str], None] = lambda m: print(m, file=sys.stderr), shadow=None) -> dict:
    """Classify frames until the source ends, `max_frames`, or `stop`; returns the summary.

    `shadow` (edge.shadow.ShadowCheck) is offered every frame's tensor and int8 top-1; its running agreement
    goes into each record, the live statistics and the summary."""
    stats, display = Stats(), Display(not opts.headless, log)
    smoothed = None
    alpha = 2.0 / (opts.smooth + 1) if opts.smooth > 0 else 1.0
    last_stats = time.monotonic()
    grabber.start()
    try:
        while not stop.is_set():
            frame = grabber.get(timeout=0.5)
            if frame is None:
                if grabber.done:
                    break
                continue
            t_pick = time.monotonic()
            x = (frame.tensor if frame.tensor is not None else preprocess(frame.image))[None]
            t_pre = time.monotonic()
            logits = runner.infer(x)[0]
            t_inf = time.monotonic()
            if shadow is not None:
                shadow.offer(x, int(np.argmax(logits)))  # int8's own answer, before smoothing
            probs = softmax(logits.astype(np.float64))
            smoothed = probs if smoothed is None else alpha * probs + (1 - alpha) * smoothed
            record = _record(frame, names, smoothed, opts.topk, (t_pick, t_pre, t_inf, time.monotonic()))
            if shadow is not None and (running := shadow.snapshot()):
                record["shadow"] = running
            stats.add(record)
            emit(record)
            if not display.show(frame.image, record):
                break
            if opts.stats_every and t_inf - last_stats >= opts.stats_every:
                log(stats.line() + (f" | {shadow.line()}" if shadow is not None else ""))
                last_stats = t_inf
            if opts.max_frames and stats.classified >= opts.max_frames:
                break
    finally:
        grabber.stop()
        grabber.join(timeout=5)
        if shadow is not None:
            shadow.close()
    summary = stats.summary(dict(grabber.counts))
    return summary | ({"shadow": shadow.summary()} if shadow is not None else {})


def _record(frame, names: list[str], probs: np.ndarray, topk: int, times: tuple) -> dict:
    """One frame's JSON line; `times`: monotonic picked, preprocessed, inferred, done."""
    t_pick, t_pre, t_inf, t_done = times
    top = np.argsort(-probs)[: min(topk, len(names))]
    preprocess_ms = frame.prepare_ms + (t_pre - t_pick) * 1000
    return {
        "frame": frame.index,
        **({"file": frame.file} if frame.file is not None else {}),
        "t": round(time.time(), 4),
        "index": int(top[0]),
        "label": names[top[0]],
        "score": round(float(probs[top[0]]), 5),
        "topk": [{"index": int(i), "label": names[i], "score": round(float(probs[i]), 5)} for i in top],
        "latency_ms": round(preprocess_ms + (t_done - t_pre) * 1000, 3),
        "age_ms": round((t_done - frame.t_capture) * 1000, 3),
        "preprocess_ms": round(preprocess_ms, 3),
        "inference_ms": round((t_inf - t_pre) * 1000, 3),
    }


def json_emitter(stream) -> Callable[[dict], None]:
    def emit(record: dict) -> None:
        stream.write(json.dumps(record) + "\n")
        stream.flush()

    return emit

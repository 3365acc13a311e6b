"""The camera loop: newest frame -> preprocess -> infer -> top-k -> JSON line / MQTT / overlay, with live stats.

`latency_ms` is the work spent on a frame (preprocessing, wherever it ran, + inference + top-k);
`age_ms` is the time from capture to decision, waiting included; `capture_ms` is the source's read of the
frame (decoding included; from a live camera, the wait for that frame too), on the capture thread, before it.

Latency mode (the default) infers one frame at a time, always the newest: on a drone the newest frame
matters most. Throughput mode keeps several in flight (edge.inflight) for boards with cores to spare;
decisions still leave in frame order.
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
from edge.metrics import ranked, softmax


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
        self.series = {k: deque(maxlen=window) for k in ("age_ms", "capture_ms", "preprocess_ms", "inference_ms", "latency_ms")}
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


class Decisions:
    """What follows inference, the same in both modes: top-k, smoothing, the shadow check, the record, stats, display."""

    def __init__(self, names: list[str], opts: LoopOptions, emit: Callable[[dict], None], log: Callable[[str], None], shadow=None):
        self.names, self.opts, self.emit, self.log, self.shadow = names, opts, emit, log, shadow
        self.stats, self.display = Stats(), Display(not opts.headless, log)
        self.smoothed = None
        self.alpha = 2.0 / (opts.smooth + 1) if opts.smooth > 0 else 1.0
        self.last_stats = time.monotonic()

    def decide(self, frame, x: np.ndarray, logits: np.ndarray, times: tuple) -> bool:
        """Emit one frame's decision; False when the user closed the window or max_frames is reached.
        `times`: monotonic picked, preprocessed, inferred."""
        if self.shadow is not None:
            self.shadow.offer(x, int(np.argmax(logits)))  # int8's own answer, before smoothing
        probs = softmax(logits.astype(np.float64))
        self.smoothed = probs if self.smoothed is None else self.alpha * probs + (1 - self.alpha) * self.smoothed
        record = _record(frame, self.names, self.smoothed, self.opts.topk, (*times, time.monotonic()))
        if self.shadow is not None and (running := self.shadow.snapshot()):
            record["shadow"] = running
        self.stats.add(record)
        self.emit(record)
        if not self.display.show(frame.image, record):
            return False
        t_inf = times[2]
        if self.opts.stats_every and t_inf - self.last_stats >= self.opts.stats_every:
            self.log(self.stats.line() + (f" | {self.shadow.line()}" if self.shadow is not None else ""))
            self.last_stats = t_inf
        return not (self.opts.max_frames and self.stats.classified >= self.opts.max_frames)


def run_loop(runner, preprocess, names: list[str], grabber, opts: LoopOptions, emit: Callable[[dict], None],
             stop: threading.Event, log: Callable[[str], None] = lambda m: sys.stderr.write(m + "\n"), shadow=None,
             in_flight=None) -> dict:
    """Classify frames until the source ends, `max_frames`, or `stop`; returns the summary.

    `in_flight` (edge.inflight.InFlight): throughput mode, several frames inferred at once and decided in
    frame order; `runner` is then unused. `shadow` (edge.shadow.ShadowCheck) is offered every frame's tensor
    and int8 top-1; its running agreement goes into each record, the live statistics and the summary."""
    decisions = Decisions(names, opts, emit, log, shadow)
    if in_flight is None:  # the runner's own input mapping (LiteRT's table) on the capture thread too: run() alone here
        grabber.prepare_for_runner = runner.prepare
    grabber.start()
    try:
        if in_flight is None:
            _latency_mode(runner, preprocess, grabber, decisions, stop)
        else:
            _throughput_mode(in_flight, preprocess, grabber, decisions, stop)
    finally:
        grabber.stop()
        grabber.join(timeout=5)
        if in_flight is not None:
            in_flight.close()
        if shadow is not None:
            shadow.close()
    mode = {"mode": "throughput", "in_flight": in_flight.depth} if in_flight is not None else {"mode": "latency"}
    summary = decisions.stats.summary(dict(grabber.counts)) | mode
    return summary | ({"shadow": shadow.summary()} if shadow is not None else {})


def _next_frame(grabber, stop: threading.Event):
    """The next frame, or None when the source has ended or `stop` is set."""
    while not stop.is_set():
        frame = grabber.get(timeout=0.5)
        if frame is not None:
            return frame
        if grabber.done:
            return None
    return None


def _tensor(frame, preprocess) -> np.ndarray:
    return (frame.tensor if frame.tensor is not None else preprocess(frame.image))[None]


def _latency_mode(runner, preprocess, grabber, decisions: Decisions, stop: threading.Event) -> None:
    """One frame at a time, always the newest: the least age for each decision."""
    while (frame := _next_frame(grabber, stop)) is not None:
        t_pick = time.monotonic()
        x = _tensor(frame, preprocess)
        t_pre = time.monotonic()
        logits = (runner.run(frame.prepared) if frame.prepared is not None else runner.infer(x))[0]
        if not decisions.decide(frame, x, logits, (t_pick, t_pre, time.monotonic())):
            return


def _throughput_mode(in_flight, preprocess, grabber, decisions: Decisions, stop: threading.Event) -> None:
    """Up to `in_flight.depth` frames inferred at once; decisions leave in frame order, each as soon as its frame
    and every earlier one are done (`inference_ms` then includes the wait for a free request)."""
    pending: deque = deque()
    limit = decisions.opts.max_frames
    ended = False
    while True:
        taking = not ended and not (limit and decisions.stats.classified + len(pending) >= limit)
        if taking:
            frame = grabber.get(timeout=0.005 if pending else 0.5)  # a finished decision does not wait for a frame
            if frame is not None:
                t_pick = time.monotonic()
                x = _tensor(frame, preprocess)
                t_pre = time.monotonic()
                pending.append((frame, x, t_pick, t_pre, in_flight.submit(x)))
            ended = stop.is_set() or (frame is None and grabber.done)
        while pending and (ended or not taking or len(pending) >= in_flight.depth or pending[0][4].done()):
            frame, x, t_pick, t_pre, future = pending.popleft()
            logits = future.result()[0]
            if not decisions.decide(frame, x, logits, (t_pick, t_pre, time.monotonic())):
                return
        if not pending and (ended or not taking):
            return


def _record(frame, names: list[str], probs: np.ndarray, topk: int, times: tuple) -> dict:
    """One frame's JSON line; `times`: monotonic picked, preprocessed, inferred, done."""
    t_pick, t_pre, t_inf, t_done = times
    top = ranked(probs)[: min(topk, len(names))]
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
        "capture_ms": round(frame.capture_ms, 3),
        "preprocess_ms": round(preprocess_ms, 3),
        "inference_ms": round((t_inf - t_pre) * 1000, 3),
    }


def json_emitter(stream) -> Callable[[dict], None]:
    def emit(record: dict) -> None:
        stream.write(json.dumps(record) + "\n")
        stream.flush()

    return emit

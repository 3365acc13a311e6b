"""The shadow check: the bundle's float model beside int8 on one frame in N, in the field, without labels.

int8's fidelity is measured once, at deploy, on deploy's images. A camera sees other things (light,
lens, scenes), and int8 can drift from float there while every frame still gets a confident label.
The float model the bundle carries is the reference: on a sampled frame it classifies the same tensor
int8 did, on its own thread, so the frame rate pays only for the CPU it shares, never for waiting.
A sampled frame that arrives while the float model is still busy with an earlier one is skipped
(counted), so the check never queues work behind the camera.

The running top-1 agreement has a Wilson 95 % interval (edge.metrics.wilson, the one deploy's report
uses). It is *clearly below* deploy's when its upper bound is under deploy's lower bound minus a margin:
the two intervals do not overlap (the loss is beyond the uncertainty of either figure), and by more than
the shift a new camera's frames are expected to bring anyway (`margin`, default 5 points). Checked after
every shadowed frame; repeated looks raise the false-alarm rate above a single test's, which deploy's
lower bound and the margin absorb. The alert is given once.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np

from edge.metrics import wilson

DEFAULT_MARGIN = 0.05
MIN_FRAMES = 10  # no verdict from a handful of frames, whatever their interval says


@dataclass(frozen=True)
class ShadowOptions:
    every: int  # float on one classified frame in `every`
    margin: float = DEFAULT_MARGIN
    reference: dict | None = None  # deploy's agreement: {"agreement", "ci95", "images", "on"}


def reference_from(config: dict) -> dict | None:
    """What deploy measured, from the bundle's config: agreement on held-out captured frames when deploy
    calibrated on this camera's frames (the closest to the field), else on deploy's own images."""
    host = config.get("host") or {}
    field = host.get("field_agreement") or {}
    if field.get("images"):
        return {"agreement": field["agreement"], "ci95": list(field["ci95"]), "images": field["images"],
                "on": "held-out captured frames"}
    fid = host.get("fidelity") or {}
    if fid.get("agreement_ci95"):
        return {"agreement": fid["agreement"], "ci95": list(fid["agreement_ci95"]), "images": fid["agreement_images"],
                "on": "images at deploy"}
    return None


def alert_threshold(reference: dict | None, margin: float) -> float | None:
    """The agreement an upper 95 % bound must fall under to be clearly below deploy's: deploy's lower bound less
    `margin`; None without a deploy figure."""
    return reference["ci95"][0] - margin if reference else None


def clearly_below(agree: int, frames: int, threshold: float | None) -> bool:
    """The field's rule (see the module's doc): on MIN_FRAMES or more, the whole 95 % interval under `threshold`."""
    return threshold is not None and frames >= MIN_FRAMES and wilson(agree, frames)[1] < threshold


class ShadowCheck(threading.Thread):
    """Runs the float model on sampled frames and keeps the running int8-vs-float agreement."""

    def __init__(self, float_runner, opts: ShadowOptions, on_alert: Callable[[str, dict], None]):
        super().__init__(daemon=True, name="shadow-float")
        self.runner, self.opts, self.on_alert = float_runner, opts, on_alert
        self.cond = threading.Condition()
        self.pending: tuple | None = None
        self.closing = False
        self.offered = self.frames = self.agree = self.skipped_busy = 0
        self.alert: str | None = None
        self.threshold = alert_threshold(opts.reference, opts.margin)
        self.start()

    def describe(self) -> str:
        """The start-up line: what is checked against what."""
        ref, every = self.opts.reference, self.opts.every
        against = (f"alert once if its upper 95 % bound falls under {self.threshold:.2f} (deploy measured {ref['agreement']:.2f}, "
                   f"95 % {ref['ci95'][0]:.2f}-{ref['ci95'][1]:.2f}, on {ref['images']} {ref['on']}; margin {self.opts.margin:g})"
                   if ref else "this bundle holds no agreement from deploy: agreement reported, no alert")
        return f"shadow check: float on 1 frame in {every} ({self.runner.runtime}); {against}"

    def offer(self, x: np.ndarray, int8_top1: int) -> None:
        """Called by the loop for every classified frame: hands one in `every` to the float thread, never waits."""
        self.offered += 1
        if (self.offered - 1) % self.opts.every:
            return
        with self.cond:
            if self.pending is not None:  # the float model has not caught up: skip rather than queue
                self.skipped_busy += 1
                return
            self.pending = (x, int8_top1)
            self.cond.notify()

    def run(self) -> None:
        while True:
            with self.cond:
                while self.pending is None and not self.closing:
                    self.cond.wait()
                if self.pending is None:
                    return
                x, int8_top1 = self.pending
            agrees = int(np.argmax(self.runner.infer(x)[0])) == int8_top1
            with self.cond:
                self.pending = None  # only now: one frame runs, the next sampled one waits in the slot or is skipped
                self.frames += 1
                self.agree += agrees
                message = self._check()
            if message:
                self.on_alert(message, self.summary())

    def _check(self) -> str | None:
        """The one alert, when agreement is clearly below deploy's (see the module's doc); under the lock."""
        if self.alert or not clearly_below(self.agree, self.frames, self.threshold):
            return None
        lo, hi = wilson(self.agree, self.frames)
        ref = self.opts.reference
        self.alert = (f"int8 agrees with float on {self.agree / self.frames:.2f} (95 % {lo:.2f}-{hi:.2f}) of {self.frames} "
                      f"shadowed frames, clearly below the {ref['agreement']:.2f} (95 % {ref['ci95'][0]:.2f}-{ref['ci95'][1]:.2f}) "
                      f"deploy measured on {ref['images']} {ref['on']} (alert under {self.threshold:.2f}): int8 does not do "
                      "here what it did at deploy; calibrate on this camera's frames (make capture, then make deploy CALIB=...)")
        return self.alert

    def snapshot(self) -> dict | None:
        """The running agreement and its 95 % interval, for the JSON line; None before the first shadowed frame."""
        with self.cond:
            if not self.frames:
                return None
            lo, hi = wilson(self.agree, self.frames)
            return {"agreement": round(self.agree / self.frames, 4), "ci95": [round(lo, 4), round(hi, 4)], "frames": self.frames}

    def line(self) -> str:
        s = self.snapshot()
        if s is None:
            return "shadow: no frame yet"
        return f"shadow agreement {s['agreement']:.3f} [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}] on {s['frames']} frames"

    def close(self, timeout: float = 30) -> None:
        """Finish the frame in hand (so the summary counts it) and stop."""
        with self.cond:
            self.closing = True
            self.cond.notify()
        self.join(timeout)

    def summary(self) -> dict:
        return {"every": self.opts.every, **(self.snapshot() or {"frames": 0}), "agree": self.agree,
                "skipped_busy": self.skipped_busy, "reference": self.opts.reference, "alert_below": self.threshold,
                "margin": self.opts.margin, "alert": self.alert}

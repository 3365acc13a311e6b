"""Accuracy-aware quantization (QUANT=auto): when PTQ misses MAX_DROP, keep the layers that cost
the most accuracy in float until the int8 model is within MAX_DROP of float top-1, and, with
quant.min_agreement set, until int8 agrees with float on that share of the images (no labels needed).

OpenVINO: `nncf.quantize_with_accuracy_control`, which ranks and reverts layers itself.
Other targets: the layers ranked by sensitivity (pipeline/quant/sensitivity.py) go to higher precision
one at a time (float; int16 activations on full-integer TFLite), each step re-quantized by the
target's own quantizer and validated in its own runtime, so every layer's accuracy gain and
latency cost is measured, not estimated.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edge.files import copy_artifact
from edge.latency import measure
from pipeline import emulation
from pipeline.quant.sensitivity import layer_sensitivity


def _predictions(runner, x: np.ndarray) -> np.ndarray:
    return np.array([int(np.argmax(runner.infer(x[i : i + 1]))) for i in range(len(x))])


class Recovery:
    """One accuracy-aware run: the target, its float artifact and PTQ artifact, and the validation images."""

    def __init__(self, target, model, folded, float_artifact: Path, ptq_artifact: Path, calibration: np.ndarray, quant, isa: str,
                 val_x: np.ndarray, val_y: np.ndarray, float_top1: float, max_drop: float, threads: int = 0,
                 precision: str = "f32", runs: int = 100, log=print):
        self.target, self.model, self.folded = target, model, folded
        self.float_artifact, self.ptq_artifact = float_artifact, ptq_artifact
        self.calibration, self.quant, self.isa = calibration, quant, isa
        self.val_x, self.val_y, self.float_top1, self.max_drop = val_x, val_y, float_top1, max_drop
        self.threads, self.precision, self.runs, self.log = threads, precision, runs, log
        self.sample = val_x[:1] if len(val_x) else calibration[:1]
        # float's own top-1 in the target runtime: what int8 must agree with (no labels needed)
        self.float_pred = _predictions(target.runner(float_artifact, threads, precision), val_x)
        self.steering = emulation.choose(isa, "off")

    def measure(self, artifact: Path) -> dict:
        runner = self.target.runner(artifact, self.threads, self.precision)
        # decided on the board's answers, natively (each step is judged, so no emulator): unsaturated int8 sums where
        # only this host's kernels saturate; timed fused
        judged = self.target.runner(artifact, self.threads, self.precision, purpose="judge", arithmetic=self.steering)
        pred = _predictions(judged, self.val_x)
        top1 = float((pred == self.val_y).mean())
        p50 = measure(runner.infer, self.sample, warmup=10, runs=self.runs)["p50"]
        return {"top1": top1, "drop_points": 100 * (self.float_top1 - top1), "agreement": float((pred == self.float_pred).mean()),
                "p50_ms": p50}

    def within_drop(self, m: dict) -> bool:
        return m["drop_points"] <= self.max_drop + 1e-9

    def agrees(self, m: dict) -> bool:
        return m["agreement"] >= self.quant.min_agreement - 1e-9

    def passes(self, m: dict) -> bool:
        return self.within_drop(m) and self.agrees(m)

    def run(self, out: Path) -> dict:
        self.log(f"[auto] per-layer sensitivity on {min(len(self.calibration), self.quant.sensitivity_images)} calibration images")
        ranked = sorted(layer_sensitivity(self.folded, self.calibration, self.quant.sensitivity_images),
                        key=lambda r: -r["sensitivity"])
        ptq = self.measure(self.ptq_artifact)
        self.log(f"[auto] PTQ top-1 {100 * ptq['top1']:.1f} % vs float {100 * self.float_top1:.1f} % "
                 f"(drop {ptq['drop_points']:.2f} points, allowed {self.max_drop}); agreement with float {ptq['agreement']:.3f}"
                 + (f" (wanted {self.quant.min_agreement})" if self.quant.min_agreement else ""))
        if self.passes(ptq):
            already = "PTQ already within MAX_DROP" + (" and quant.min_agreement" if self.quant.min_agreement else "")
            path, kept, steps, method, final = copy_artifact(self.ptq_artifact, out), [], [], already, ptq
        elif self.target.own_accuracy_search and not self.quant.min_agreement:  # NNCF's search steers by labels alone
            path, kept, steps, method = self._nncf_accuracy_control(out, ranked)
            final = self.measure(path)
        else:  # each step is measured as it is made; the last one is the final model
            path, kept, steps, method = self._greedy(out, ranked, ptq)
            final = {k: steps[-1][k] for k in ptq}
        for k in kept:  # NNCF reverts its layers together: each row's "after" is the final model
            k.setdefault("top1_after", final["top1"])
        self.log(f"[auto] {len(kept)} layer(s) kept in {self.target.higher_precision}; top-1 {100 * final['top1']:.1f} % "
                 f"(drop {final['drop_points']:.2f} points), agreement {final['agreement']:.3f}, "
                 f"p50 {ptq['p50_ms']:.2f} -> {final['p50_ms']:.2f} ms")
        return {
            "artifact": path.name,
            "method": method,
            "kept_precision": self.target.higher_precision,
            "reached_max_drop": self.within_drop(final),
            "min_agreement": self.quant.min_agreement,
            "reached_min_agreement": self.agrees(final),
            "kept_float": kept,
            "steps": steps,
            "ptq": ptq,
            "final": final,
            "float_top1": self.float_top1,
            "validation_images": int(len(self.val_y)),
            "sensitivity": ranked[:15],
        }

    def _greedy(self, out: Path, ranked: list[dict], ptq: dict):
        work = Path(out).parent / "steps"
        work.mkdir(exist_ok=True)
        kept, steps, current, path = [], [{"float_layers": 0, **ptq}], ptq, None
        for row in ranked[: self.quant.max_float_layers]:
            if self.passes(current):
                break
            layers = tuple(r["layer"] for r in kept) + (row["layer"],)
            self.log(f"[auto] step {len(layers)}: {row['layer']} ({row['kind']}, sensitivity {row['sensitivity']:.2e}) "
                     f"to {self.target.higher_precision}")
            path = self.target.quantize(self.model, self.float_artifact, self.calibration, self.quant, work / f"step{len(layers)}", exclude=layers,
                                         isa=self.isa)
            m = self.measure(path)
            kept.append({**row, "top1_after": m["top1"], "agreement_after": m["agreement"],
                         "latency_cost_ms": m["p50_ms"] - current["p50_ms"]})
            steps.append({"float_layers": len(layers), **m})
            current = m
        final = copy_artifact(path, out) if path else copy_artifact(self.ptq_artifact, out)
        shutil.rmtree(work)
        return final, kept, steps, (f"sensitivity-ranked layers to {self.target.higher_precision} one at a time "
                                    f"(at most {self.quant.max_float_layers})")

    def _nncf_accuracy_control(self, out: Path, ranked: list[dict]):
        self.log("[auto] nncf.quantize_with_accuracy_control on the validation images")
        path = self.target.quantize_accuracy_aware(self.float_artifact, self.calibration, self.quant, self.val_x, self.val_y,
                                                   self.max_drop, out, isa=self.isa)
        already = set(self.target.float_compute_layers(self.ptq_artifact))
        reverted = [layer for layer in self.target.float_compute_layers(path) if layer not in already]
        by_name = {r["layer"]: r for r in ranked}
        ptq_times = self.target.layer_times(self.ptq_artifact, self.sample, threads=self.threads)
        auto_times = self.target.layer_times(path, self.sample, threads=self.threads)
        kept = []
        for layer in reverted:
            row = by_name.get(layer, {"layer": layer, "kind": "?", "sensitivity": None, "top1_agreement": None})
            cost = auto_times[layer] - ptq_times[layer] if layer in auto_times and layer in ptq_times else None
            kept.append({**row, "latency_cost_ms": cost})
        return path, kept, [], "nncf.quantize_with_accuracy_control (layer latency from the CPU plugin's per-node counters)"

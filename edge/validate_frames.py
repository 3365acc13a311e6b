"""`./run.sh validate --data FRAMES` on frames without labels (make capture's folder, on the board that took them):
int8 against the bundle's float model, judged as the shadow check judges the field (edge.shadow), against what
deploy measured. Failed when the frames' agreement is clearly below deploy's (its whole 95 % interval under deploy's
lower bound minus the margin a new camera brings anyway), passed when it is not on at least MIN_FRAMES frames,
inconclusive on fewer or with no deploy figure to compare with. make rollout gates each board on it."""
from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np

from edge.dataset import Sample, list_images
from edge.errors import UserError
from edge.evaluate import classify
from edge.files import write_atomic
from edge.isa import detect as detect_isa
from edge.latency import measure
from edge.metrics import ships, wilson
from edge.report import pct
from edge.shadow import DEFAULT_MARGIN, MIN_FRAMES, alert_threshold, clearly_below, reference_from


def validate_frames(bundle, args) -> dict:
    cfg = bundle.config
    if not cfg.get("float_artifact"):
        raise UserError(f"{args.data} has frames without labels, and this bundle carries no float model to compare int8 "
                        "with: sort the frames into one subfolder per class, or rebuild the bundle with make deploy")
    files = list_images(Path(args.data))[: args.max_images or None]
    runners = {"int8": bundle.runner("int8", args.threads), "float": bundle.runner("float", args.threads)}
    out = classify([Sample(p, -1) for p in files], bundle.model_input, {k: r.infer for k, r in runners.items()})
    n = len(out["labels"])
    if n == 0:
        raise UserError(f"all {len(out['skipped'])} images in {args.data} are unreadable")
    agree = int((out["logits"]["int8"].argmax(1) == out["logits"]["float"].argmax(1)).sum())
    report = frames_report(agree, n, reference_from(cfg), args.strict) | {
        "model": cfg["model"], "target": cfg["target"], "quant": cfg["quant"], "skipped": len(out["skipped"]),
        "latency_ms": measure(runners["int8"].infer, bundle.blank(), args.warmup, args.runs),
        "runtime": runners["int8"].runtime, "int8_isa": {"made_for": cfg.get("int8_isa"), "board": detect_isa()},
        "measured_on": f"device {platform.node()} ({platform.machine()})"}
    out_dir = Path(args.out) if args.out else bundle.root / "validation"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / "report.json", json.dumps(report, indent=2))
    write_atomic(out_dir / "report.md", f"# {cfg['model']} {cfg['quant']} on the device, on frames without labels\n\n"
                                        f"{report['line']}\n\nMeasured on {report['measured_on']} with {report['runtime']}.\n")
    print(f"{report['line']}; report in {out_dir}")
    return report


def frames_report(agree: int, n: int, reference: dict | None, strict: bool) -> dict:
    """The verdict on `agree` of `n` frames against deploy's agreement (`reference`, edge.shadow.reference_from)."""
    lo, hi = wilson(agree, n)
    said = f"int8 agrees with float on {pct(agree / n)} of {n} frames (95 % interval {pct(lo)} to {pct(hi)})"
    floor = alert_threshold(reference, DEFAULT_MARGIN)
    where = (f"deploy's {pct(reference['agreement'])} (95 % {pct(reference['ci95'][0])} to {pct(reference['ci95'][1])}) "
             f"on {reference['images']} {reference['on']}") if reference else ""
    if clearly_below(agree, n, floor):
        verdict, why = "failed", f"{said}, clearly below {where}: int8 does not do on these frames what it did at deploy"
    elif n < MIN_FRAMES:
        verdict, why = "inconclusive", f"{said}: too few frames to judge ({MIN_FRAMES} at least)"
    elif floor is None:
        verdict, why = "inconclusive", f"{said}: the bundle holds no deploy agreement to compare with"
    else:
        verdict, why = "passed", f"{said}, not clearly below {where} (allowing {100 * DEFAULT_MARGIN:.0f} points for a new camera)"
    return {"verdict": verdict, "passed": verdict == "passed", "ships": ships(verdict, strict), "strict": bool(strict),
            "failures": [why] if verdict == "failed" else [], "line": f"{verdict.upper()}: {why}",
            "frames": {"images": n, "agree": agree, "agreement": agree / n, "ci95": [lo, hi]}, "reference": reference,
            "margin": DEFAULT_MARGIN}

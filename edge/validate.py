"""`./run.sh validate --data DIR`: the host's accuracy and latency check, with the board's own runtime."""
from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np

from edge.dataset import labelled_samples
from edge.errors import UserError
from edge.evaluate import classify
from edge.files import artifact_size_mb, write_atomic
from edge.latency import measure
from edge.isa import describe as describe_isa
from edge.isa import detect as detect_isa
from edge.metrics import accuracy, agreeing, agreement, fidelity, paired_counts, ships


def validate_bundle(bundle, args) -> dict:
    cfg = bundle.config
    samples = labelled_samples(args.data, bundle.classes)
    if args.max_images:
        samples = samples[: args.max_images]
    runners = {"int8": bundle.runner("int8", args.threads)}
    if cfg.get("float_artifact"):
        runners["float"] = bundle.runner("float", args.threads)
    out = classify(samples, bundle.preprocess, {k: r.infer for k, r in runners.items()})
    logits, y = out["logits"], out["labels"]
    if len(y) == 0:
        raise UserError(f"all {len(out['skipped'])} images in {args.data} are unreadable")
    size = bundle.preprocess.image_size
    sample = np.zeros((1, 3, size, size), np.float32)
    latency = {k: measure(r.infer, sample, args.warmup, args.runs) for k, r in runners.items()}
    acc_int8 = accuracy(logits["int8"], y)
    acc_float = accuracy(logits["float"], y) if "float" in logits else None
    fid = None
    if "float" in logits:  # the host's rule: passed / failed / inconclusive from the paired outcomes
        agree = agreeing(logits["float"], logits["int8"])
        fid = fidelity(paired_counts(logits["float"], logits["int8"], y), agree, len(y), cfg["thresholds"]["max_drop"])
    verdict = fid["verdict"] if fid else "inconclusive"
    lat = latency["int8"]
    board_isa, made_for = detect_isa(), cfg.get("int8_isa")
    if made_for and board_isa != made_for and made_for != "gpu":
        print(f"warning: this int8 model was made for {describe_isa(made_for)}; this board is {describe_isa(board_isa)}. "
              "Its int8 results can differ from the host's: this validation is the one that counts.", file=sys.stderr)
    report = {
        "model": cfg["model"],
        "target": cfg["target"],
        "quant": cfg["quant"],
        "measured_on": f"device {platform.node()} ({platform.machine()})",
        "int8_isa": {"made_for": made_for, "board": board_isa},
        "verdict": verdict,
        "passed": verdict == "passed",
        "ships": ships(verdict, args.strict),
        "strict": bool(args.strict),
        "failures": [fid["reason"]] if verdict == "failed" else [],
        "fidelity": fid,
        "artifact": str(bundle.root / cfg["artifact"]),
        "accuracy": {
            "float": acc_float,
            "int8": acc_int8,
            "top1_agreement": agreement(logits["int8"], logits["float"]) if "float" in logits else None,
            "images": int(len(y)),
            "skipped": len(out["skipped"]),
            "skipped_files": out["skipped"][:50],
            "max_drop_points": cfg["thresholds"]["max_drop"],
        },
        "latency_ms": {k: lat[k] for k in ("p50", "p90", "p99", "mean", "runs")},
        "throughput_fps": lat["throughput_fps"],
        "float_latency_ms": latency.get("float"),
        "runtime": {k: r.runtime for k, r in runners.items()} | {"threads": runners["int8"].threads},
        "size_mb": {k: artifact_size_mb(bundle.root / cfg[a]) for k, a in (("int8", "artifact"), ("float", "float_artifact")) if cfg.get(a)},
        "calibration": cfg.get("host", {}).get("calibration"),
        "host": cfg.get("host"),
    }
    out_dir = Path(args.out) if args.out else bundle.root / "validation"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / "report.json", json.dumps(report, indent=2))
    write_atomic(out_dir / "report.md", markdown(report))
    reason = fid["reason"] if fid else "the bundle has no float model to compare with"
    print(f"{verdict.upper()}: {reason}; report in {out_dir}")
    return report


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def markdown(r: dict) -> str:
    acc, lat, host = r["accuracy"], r["latency_ms"], r.get("host") or {}
    host_acc = host.get("accuracy", {})
    host_lat = host.get("latency_ms", {})
    lines = [
        f"# {r['model']} → {r['target']} ({r['quant']}) on the device: {r['verdict'].upper()}",
        "",
        *([f"**Verdict: {r['verdict']}.** {r['fidelity']['reason']}.", ""] if r["fidelity"] else []),
        f"int8 made for {r['int8_isa']['made_for'] or '?'}; this board's int8 ISA: {r['int8_isa']['board']}. "
        f"Measured on {r['measured_on']} with {r['runtime']['int8']}, {r['runtime']['threads']} threads; "
        f"{acc['images']} images ({acc['skipped']} unreadable, skipped).",
        "",
        "| | top-1 | top-5 | agreement with float | p50 ms | p99 ms | images/s |",
        "|---|---|---|---|---|---|---|",
    ]
    if acc["float"]:
        fl = r["float_latency_ms"]
        lines.append(f"| float (device) | {_pct(acc['float']['top1'])} | {_pct(acc['float']['top5'])} | — | {fl['p50']:.2f} | {fl['p99']:.2f} | {fl['throughput_fps']:.1f} |")
    lines.append(f"| **int8 (device)** | {_pct(acc['int8']['top1'])} | {_pct(acc['int8']['top5'])} | {_pct(acc['top1_agreement'])} "
                 f"| {lat['p50']:.2f} | {lat['p99']:.2f} | {r['throughput_fps']:.1f} |")
    if host_acc:
        lines.append(f"| int8 (host, {host.get('runtime', '?')}) | {_pct(host_acc.get('int8', {}).get('top1'))} "
                     f"| {_pct(host_acc.get('int8', {}).get('top5'))} | {_pct(host_acc.get('top1_agreement'))} "
                     f"| {host_lat.get('p50', 0):.2f} | {host_lat.get('p99', 0):.2f} | {host.get('throughput_fps', 0):.1f} |")
    lines += ["", f"Host figures were measured on {host.get('data', '?')}; compare like with like.", ""]
    return "\n".join(lines)

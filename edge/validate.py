"""`./run.sh validate --data DIR`: the host's accuracy and latency check, with the board's own runtime."""
from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

from edge.dataset import check_folder, labelled_samples, list_images
from edge.errors import UserError
from edge.evaluate import classify
from edge.files import artifact_size_mb, write_atomic
from edge.isa import describe as describe_isa
from edge.isa import detect as detect_isa
from edge.latency import measure
from edge.metrics import accuracy, agreeing, agreement, fidelity, paired_counts
from edge.report import (TABLE, accuracy_block, core, fidelity_lines, headline, int8_row, isa_lines, isa_mismatch, judge,
                         row, title, verdict_line)


def validate_bundle(bundle, args) -> dict:
    """Classify DATA with the bundle's artifacts in this board's runtime, time them, and gate int8 as the host does.
    A folder of frames without class subfolders (make capture's) is judged without labels (validate_frames)."""
    if unlabelled(args.data):
        from edge.validate_frames import validate_frames

        return validate_frames(bundle, args)
    cfg = bundle.config
    samples = labelled_samples(args.data, bundle.classes)
    if args.max_images:
        samples = samples[: args.max_images]
    runners = {"int8": bundle.runner("int8", args.threads)}
    if cfg.get("float_artifact"):
        runners["float"] = bundle.runner("float", args.threads)
    out = classify(samples, bundle.model_input, {k: r.infer for k, r in runners.items()})
    if len(out["labels"]) == 0:
        raise UserError(f"all {len(out['skipped'])} images in {args.data} are unreadable")
    latency = {k: measure(r.infer, bundle.blank(), args.warmup, args.runs) for k, r in runners.items()}
    report = board_report(bundle, out, latency, runners, args.strict)
    isa = report["int8_isa"]
    if isa_mismatch(isa["made_for"], isa["board"], "board"):
        print(f"warning: this int8 model was made for {describe_isa(isa['made_for'])}; this board is {describe_isa(isa['board'])}. "
              "Its int8 results can differ from the host's: this validation is the one that counts.", file=sys.stderr)
    out_dir = Path(args.out) if args.out else bundle.root / "validation"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / "report.json", json.dumps(report, indent=2))
    write_atomic(out_dir / "report.md", markdown(report))
    print(f"{headline(report)}; report in {out_dir}")
    return report


def unlabelled(folder) -> bool:
    """A folder of images with no class subfolder holding any: frames, as make capture writes them."""
    folder = check_folder(folder)
    return not any(d.is_dir() and list_images(d) for d in folder.iterdir())


def board_report(bundle, out: dict, latency: dict, runners: dict, strict: bool) -> dict:
    """report.json: the keys the host's report shares (edge.report.core), then where it was measured and the host's figures."""
    cfg = bundle.config
    logits, y = out["logits"], out["labels"]
    max_drop = cfg["thresholds"]["max_drop"]
    has_float = "float" in logits
    fid = None
    if has_float:  # the host's rule: passed / failed / inconclusive from the paired outcomes
        fid = fidelity(paired_counts(logits["float"], logits["int8"], y), agreeing(logits["float"], logits["int8"]), len(y), max_drop)
    report = core(
        model=cfg["model"], target=cfg["target"], quant=cfg["quant"], judged=judge(fid, [], strict),
        artifact=bundle.root / cfg["artifact"],
        accuracy=accuracy_block(float_=accuracy(logits["float"], y) if has_float else None, int8=accuracy(logits["int8"], y),
                                agreement=agreement(logits["int8"], logits["float"]) if has_float else None, images=len(y),
                                skipped=len(out["skipped"]), skipped_files=out["skipped"], max_drop=max_drop),
        latency=latency["int8"], float_latency=latency.get("float"),
        runtime={k: r.runtime for k, r in runners.items()} | {"threads": runners["int8"].threads},
        size_mb={k: artifact_size_mb(bundle.root / cfg[a]) for k, a in (("int8", "artifact"), ("float", "float_artifact")) if cfg.get(a)},
        calibration=cfg.get("host", {}).get("calibration"),
        int8_isa={"made_for": cfg.get("int8_isa"), "board": detect_isa()},
    )
    return report | {"measured_on": f"device {platform.node()} ({platform.machine()})", "host": cfg.get("host")}


def markdown(r: dict) -> str:
    acc, host = r["accuracy"], r.get("host") or {}
    lines = [
        title(r, " on the device"),
        "",
        *verdict_line(r),
        *fidelity_lines(r["fidelity"]),
        f"Measured on {r['measured_on']} with {r['runtime']['int8']}, {r['runtime']['threads']} threads; "
        f"{acc['images']} images ({acc['skipped']} unreadable, skipped).",
        "",
        *isa_lines(r["int8_isa"]["made_for"], r["int8_isa"]["board"], "board"),
        "",
        *TABLE,
    ]
    if acc["float"]:  # the float artifact is the reference here: no PyTorch on the board
        lines.append(row("float (device)", acc["float"], "—", r["float_latency_ms"], r["size_mb"].get("float")))
    lines.append(int8_row("**int8 (device)**", r))
    if host.get("accuracy"):
        lines.append(int8_row(f"int8 (host, {host.get('runtime', '?')})", host))
    lines += ["", f"Host figures were measured on {host.get('data', '?')}; compare like with like.", ""]
    return "\n".join(lines)

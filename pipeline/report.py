"""report.json for machines, report.md for people, latency.png for a glance; and the accuracy gate."""
from __future__ import annotations

import json
from pathlib import Path

from edge.files import artifact_size_mb
from edge.isa import describe as describe_isa
from edge.isa import detect as detect_isa
from edge.metrics import fidelity, ships
from pipeline.runfolder import write_atomic

PARITY_RTOL = 1e-3  # float artifact vs PyTorch: max |diff| relative to the largest logit


def gate(cfg, validation: dict, ops: dict) -> dict:
    """The verdict (passed, failed or inconclusive), the fidelity figures behind it, and every failure."""
    extra = validation.get("agreement_unlabelled") or {"images": 0, "agree": 0}
    fid = fidelity(validation["paired"], validation["agree"] + extra["agree"], validation["images"] + extra["images"], cfg.max_drop)
    fid["agreement_sources"] = {"validation": validation["images"], "calibration": extra["images"]}
    failures = [fid["reason"]] if fid["verdict"] == "failed" else []
    parity = validation["float_parity"]
    if parity["relative_diff"] > PARITY_RTOL:
        failures.append(
            f"the float artifact differs from PyTorch by {parity['relative_diff']:.2e} of the logit scale "
            f"(tolerance {PARITY_RTOL:g}): the conversion is wrong"
        )
    if ops.get("compute_ops_int8_input", 0) == 0:
        failures.append("the int8 artifact has no compute op with an int8 input: it is not quantized")
    elif ops.get("full_integer") is False:
        failures.append(f"float ops remain in the full-integer artifact: {', '.join(ops['float_compute_ops'][:8])}")
    verdict = "failed" if failures else fid["verdict"]
    return {"verdict": verdict, "failures": failures, "fidelity": fid,
            "ships": ships(verdict, cfg.strict)}


def write_report(cfg, spec, preprocess, stages: dict, data_dir: Path, data_is_sample: bool, sample_count: int, log=print) -> dict:
    run_dir = cfg.run_dir
    v = stages["validate"].result
    mode = cfg.quant.mode
    float_stage, calib = stages["float"], stages["calibration"].result
    int8_stage = stages[mode] if mode != "ptq" else stages["int8"]  # the artifact that ships
    ops = int8_stage.result["ops"]
    verdict = gate(cfg, v, ops)
    lat = v["latency_ms"]["int8"]
    report = {
        "model": spec.name,
        "target": cfg.target,
        "quant": cfg.quant_name,
        "verdict": verdict["verdict"],
        "passed": verdict["verdict"] == "passed",
        "ships": verdict["ships"],
        "strict": cfg.strict,
        "failures": verdict["failures"],
        "fidelity": verdict["fidelity"],
        "artifact": str(int8_stage.path(int8_stage.result["artifact"])),
        "float_artifact": str(float_stage.path(float_stage.result["artifact"])),
        "weights": stages["model"].result["weights"],
        "preprocess": preprocess.to_dict(),
        "data": {"folder": str(data_dir), "embedded_sample": data_is_sample},
        "accuracy": {
            "float": v["accuracy"]["float"],
            "float_artifact": v["accuracy"]["float_artifact"],
            "int8": v["accuracy"]["int8"],
            "top1_agreement": v["accuracy"]["top1_agreement"],
            "images": v["images"],
            "skipped": v["skipped"],
            "skipped_files": v["skipped_files"],
            "max_drop_points": cfg.max_drop,
        },
        "float_parity": v["float_parity"],
        "latency_ms": {k: lat[k] for k in ("p50", "p90", "p99", "mean", "runs")},
        "throughput_fps": lat["throughput_fps"],
        "float_latency_ms": v["latency_ms"]["float"],
        "runtime": v["runtime"],
        "int8_ops": ops,
        "executed_precisions": v["executed_precisions"],
        "layer_errors": v.get("layer_errors"),
        "size_mb": {
            "float": artifact_size_mb(float_stage.path(float_stage.result["artifact"])),
            "int8": artifact_size_mb(int8_stage.path(int8_stage.result["artifact"])),
        },
        "calibration": calib,
        "int8_isa": {"made_for": cfg.quant.isa, "validated_on": detect_isa(), "recipe": cfg.quant.recipe(cfg.target)},
        "stage_seconds": {name: s.seconds for name, s in stages.items()},
    }
    if mode != "ptq":  # what QAT / accuracy-aware bought over plain PTQ, measured the same way
        ptq_stage = stages["int8"]
        report["ptq"] = {
            "artifact": str(ptq_stage.path(ptq_stage.result["artifact"])),
            "accuracy": v["accuracy"]["ptq"],
            "top1_agreement": v["accuracy"]["ptq_top1_agreement"],
            "latency_ms": v["latency_ms"]["ptq"],
            "size_mb": artifact_size_mb(ptq_stage.path(ptq_stage.result["artifact"])),
            "int8_ops": ptq_stage.result["ops"],
        }
    if mode == "qat":
        q = int8_stage.result
        report["qat"] = {k: q.get(k) for k in ("history", "train_images", "train_folder", "train_split", "trained_on_validation_data")}
    if mode == "auto":
        a = int8_stage.result
        report["auto"] = {k: a[k] for k in ("method", "kept_precision", "reached_max_drop", "kept_float", "steps", "ptq", "final",
                                              "validation_images", "sensitivity")}
    write_atomic(run_dir / "report.json", json.dumps(report, indent=2))
    write_atomic(run_dir / "report.md", markdown(report, sample_count))
    _plot(report, v, run_dir / "latency.png")
    log(f"[report] {run_dir / 'report.md'}: {headline(report)}")
    return report


def headline(r: dict) -> str:
    """One line: the verdict and why."""
    if r["verdict"] == "failed":
        return "FAILED: " + "; ".join(r["failures"])
    word = "PASSED" if r["verdict"] == "passed" else "INCONCLUSIVE" + (" (STRICT: counts as a failure)" if r["strict"] else "")
    return f"{word}: {r['fidelity']['reason']}"


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def markdown(r: dict, sample_count: int) -> str:
    acc, lat, flat = r["accuracy"], r["latency_ms"], r["float_latency_ms"]
    lines = [f"# {r['model']} → {r['target']} ({r['quant']}): {r['verdict'].upper()}", "", *_verdict_lines(r)]
    if r["calibration"]["random"]:
        lines.append("- **WARNING: calibrated on RANDOM data (CALIB=random). Accuracy of this int8 model is not to be trusted.**")
    if r["data"]["embedded_sample"]:
        lines.append(
            f"- **Note: no DATA given: validated on the embedded sample of only {sample_count} real photos. "
            "That shows the pipeline works; it is far too few images to measure accuracy. Pass DATA=folder.**"
        )
    lines += [
        "",
        f"Validated on {acc['images']} images from `{r['data']['folder']}` ({acc['skipped']} unreadable, skipped). "
        f"Weights: {r['weights']}.",
        "",
        "| | top-1 | top-5 | top-1 agreement with float | p50 ms | p90 ms | p99 ms | images/s | size MB |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| float (PyTorch) | {_pct(acc['float']['top1'])} | {_pct(acc['float']['top5'])} | — | | | | | |",
        _row(f"float ({r['runtime']['float']})", acc["float_artifact"], r["float_parity"]["top1_agreement"], flat, r["size_mb"]["float"]),
        *_ptq_row(r),
        _row(f"**int8{' ' + r['quant'].split('-')[1].upper() if 'ptq' in r else ''}** ({r['runtime']['int8']})", acc["int8"],
             acc["top1_agreement"], {**lat, "throughput_fps": r["throughput_fps"]}, r["size_mb"]["int8"]),
        "",
        f"- Gate: int8 top-1 may fall at most {acc['max_drop_points']} points below float. Passed when the whole 95 % "
        "interval of the drop is within that, failed when the whole interval is beyond it, inconclusive otherwise.",
        f"- Float conversion check: max |logit difference| vs PyTorch {r['float_parity']['max_abs_diff']:.2e} "
        f"({r['float_parity']['relative_diff']:.1e} of the logit scale).",
        f"- Latency: batch 1, {lat['runs']} timed runs after warm-up, {r['runtime']['threads']} threads.",
        f"- int8 graph: {r['int8_ops']['compute_ops_int8_input']} of {r['int8_ops']['compute_ops']} compute ops read int8 "
        f"inputs ({100 * r['int8_ops']['int8_macs_share']:.1f} % of multiply-adds)"
        + (f"; the runtime executes its compute layers in {r['executed_precisions']}." if r["executed_precisions"] else "."),
        *_isa_lines(r["int8_isa"]),
        f"- Calibration: {r['calibration']['count']} images from `{r['calibration']['source']}`"
        f"{' (RANDOM)' if r['calibration']['random'] else ''}.",
        f"- Artifact: `{r['artifact']}`",
        *[f"- {note}" for note in r["int8_ops"].get("notes", [])],
        "",
        "![latency](latency.png)",
        "",
    ]
    lines += _qat_section(r) + _auto_section(r)
    if r.get("layer_errors"):
        lines += ["## Layers with the largest int8 error", "",
                  "Mean |int8 − float| / mean |float| of each op's output, on 4 calibration images, in graph order.", "",
                  "| # | op | tensor | relative error |", "|---|---|---|---|"]
        lines += [f"| {e['index']} | {e['op']} | `{e['tensor']}` | {e['relative_error']:.3f} |" for e in r["layer_errors"]]
        lines.append("")
    return "\n".join(lines)


def _isa_lines(i: dict) -> list[str]:
    recipe = ", ".join(f"{k}={v}" for k, v in i["recipe"].items()) if "none" not in i["recipe"] else i["recipe"]["none"]
    lines = [f"- int8 made for **{describe_isa(i['made_for'])}** (quantizer: {recipe}); "
             f"validated on this host's **{describe_isa(i['validated_on'])}**."]
    if i["made_for"] != i["validated_on"]:
        lines.append("- **The board's int8 arithmetic differs from this host's: its results can differ from these. "
                     "Run `./run.sh validate --data DIR` on the board.**")
    return lines


def _verdict_lines(r: dict) -> list[str]:
    """What the verdict is, why, how sure, and what to do next."""
    f = r["fidelity"]
    lo, hi = f["drop_ci95_points"]
    src = f["agreement_sources"]
    where = f"{src['validation']} validation images" + (f" + {src['calibration']} unlabelled calibration images" if src["calibration"] else "")
    lines = [f"**Verdict: {r['verdict']}.** " + (" ".join(f"{x}." for x in r["failures"]) if r["failures"] else f"{f['reason']}."), ""]
    if r["verdict"] == "inconclusive":
        lines += [f"**The int8 model is unverified: the bundle is {'not written (STRICT)' if r['strict'] else 'written and marked unverified'}. "
                  "Validate on more labelled images (DATA=folder) to settle it.**", ""]
    a_lo, a_hi = f["agreement_ci95"] or (None, None)
    lines += [
        "| fidelity to float | measured | 95 % interval | images |",
        "|---|---|---|---|",
        f"| int8 top-1 drop (points) | {f['drop_points']:+.2f} | {lo:+.2f} to {hi:+.2f} | {f['images']} labelled |",
        f"| top-1 agreement with float | {_pct(f['agreement'])} | {_pct(a_lo)} to {_pct(a_hi)} | {where} |",
        "",
        f"Paired outcomes: {f['paired']['both_right']} right in both, {f['paired']['float_only']} right only in float, "
        f"{f['paired']['int8_only']} right only in int8, {f['paired']['both_wrong']} wrong in both."
        + (" Calibration images count toward agreement (it needs no labels); int8 was calibrated on them, "
           "so agreement there can be a little optimistic." if src["calibration"] else ""),
        "",
    ]
    if r["data"]["embedded_sample"]:
        lines += [f"**Next:** run it on your own labelled images: `make deploy TARGET={r['target']} MODEL={r['model']} "
                  "DATA=path/to/labelled/images` (one subfolder per class).", ""]
    elif r["verdict"] == "inconclusive" and f["images_to_resolve"]:
        lines += [f"**Next:** about {f['images_to_resolve']} labelled images would resolve MAX_DROP={f['max_drop_points']:g}.", ""]
    return lines


def _row(label: str, accuracy: dict, agreement, lat: dict, size_mb) -> str:
    """One line of the accuracy/latency table: an artifact measured in its runtime."""
    return (f"| {label} | {_pct(accuracy['top1'])} | {_pct(accuracy['top5'])} | {_pct(agreement)} | {lat['p50']:.2f} "
            f"| {lat['p90']:.2f} | {lat['p99']:.2f} | {lat['throughput_fps']:.1f} | {size_mb} |")


def _ptq_row(r: dict) -> list[str]:
    if "ptq" not in r:
        return []
    p = r["ptq"]
    return [_row(f"int8 PTQ ({r['runtime']['int8']})", p["accuracy"], p["top1_agreement"], p["latency_ms"], p["size_mb"])]


def _qat_section(r: dict) -> list[str]:
    if "qat" not in r:
        return []
    q = r["qat"]
    lines = ["## Quantization-aware training", "",
             f"Started from NNCF's PTQ initialisation; {len(q['history'])} epoch(s) on {q['train_images']} images "
             f"from `{q['train_folder']}`" + (" (half of each class of DATA; every row of this report is validated on "
                                              "the other half, which QAT never saw)" if q.get("train_split") else "")
             + ", loss = cross-entropy + distillation from the float model.", ""]
    if (r["accuracy"]["int8"]["top1"] or 0) > (r["accuracy"]["float"]["top1"] or 0):
        lines += ["- QAT's int8 top-1 is above the float model's: QAT is also more training on TRAIN_DATA, "
                  "which the float model did not get. Compare with PTQ for what quantization alone costs.", ""]
    if q["trained_on_validation_data"]:
        lines += ["- **Note: QAT trained on the validation folder itself (no TRAIN_DATA given), so the QAT accuracy "
                  "above is optimistic. Pass TRAIN_DATA=folder with other images.**", ""]
    lines += ["| epoch | loss | top-1 agreement with float (training crops) |", "|---|---|---|"]
    lines += [f"| {h['epoch']} | {h['loss']:.4f} | {_pct(h['train_agreement_with_float'])} |" for h in q["history"]]
    return lines + [""]


def _auto_section(r: dict) -> list[str]:
    if "auto" not in r:
        return []
    a = r["auto"]
    lines = ["## Accuracy-aware quantization", "",
             f"Method: {a['method']}. On {a['validation_images']} validation images: PTQ top-1 {_pct(a['ptq']['top1'])} "
             f"({a['ptq']['drop_points']:.2f} points below float, p50 {a['ptq']['p50_ms']:.2f} ms) → "
             f"{_pct(a['final']['top1'])} ({a['final']['drop_points']:.2f} points, p50 {a['final']['p50_ms']:.2f} ms); "
             f"MAX_DROP {'reached' if a['reached_max_drop'] else '**not reached**'}.", ""]
    if a["kept_float"]:
        lines += [f"Layers kept out of int8 ({a['kept_precision']} on the board). Sensitivity: relative error of the logits when this "
                  "layer alone is int8 (PyTorch simulation); latency cost: the step in measured p50"
                  + (" (CPU plugin per-node counters)." if "nncf" in a["method"] else " after re-quantizing without it."), "",
                  "| layer | kind | sensitivity | latency cost ms | top-1 after |", "|---|---|---|---|---|"]
        for k in a["kept_float"]:
            sens = "—" if k.get("sensitivity") is None else f"{k['sensitivity']:.2e}"
            cost = "—" if k.get("latency_cost_ms") is None else f"{k['latency_cost_ms']:+.3f}"
            lines.append(f"| `{k['layer']}` | {k['kind']} | {sens} | {cost} | {_pct(k.get('top1_after'))} |")
    else:
        lines.append("No layer was kept out of int8.")
    lines += ["", "Most sensitive layers (all measured):", "", "| layer | kind | sensitivity | top-1 agreement alone |",
              "|---|---|---|---|"]
    lines += [f"| `{s['layer']}` | {s['kind']} | {s['sensitivity']:.2e} | {_pct(s['top1_agreement'])} |" for s in a["sensitivity"][:8]]
    return lines + [""]


def _plot(report: dict, validation: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    lat, acc = validation["latency_ms"], report["accuracy"]
    names = ["float", "ptq", "int8"] if "ptq" in lat else ["float", "int8"]
    labels = {"float": "float", "ptq": "int8 PTQ", "int8": f"int8 {report['quant'].split('-')[1].upper()}" if "ptq" in lat else "int8"}
    colours = {"float": "#888", "ptq": "#9cd", "int8": "#2a7"}
    p50 = [lat[n]["p50"] for n in names]
    err = [[0 for _ in names], [lat[n]["p99"] - lat[n]["p50"] for n in names]]
    bars = ax1.bar([labels[n] for n in names], p50, yerr=err, capsize=6, color=[colours[n] for n in names])
    ax1.bar_label(bars, fmt="p50 %.2f", label_type="edge", padding=2)
    ax1.set_ylabel("ms at batch 1 (p50, bar to p99)")
    ax1.set_title("latency")
    top1 = {"float": acc["float"]["top1"], "int8": acc["int8"]["top1"], "ptq": report.get("ptq", {}).get("accuracy", {}).get("top1")}
    bars = ax2.bar([labels[n] for n in names], [100 * (top1[n] or 0) for n in names], color=[colours[n] for n in names])
    ax2.bar_label(bars, fmt="%.1f", label_type="center")  # a point or two of difference is invisible at this scale
    ax2.set_ylim(0, 100)
    ax2.set_ylabel("top-1 %")
    ax2.set_title(f"accuracy on {acc['images']} images")
    fig.suptitle(f"{report['model']} on {report['target']}")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)

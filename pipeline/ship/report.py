"""report.json for machines, report.md for people, latency.png for a glance; and the accuracy gate."""
from __future__ import annotations

import json
import os
from pathlib import Path

from edge.files import artifact_size_mb
from edge.isa import detect as detect_isa
from edge.metrics import fidelity, wilson
from edge.report import (TABLE, accuracy_block, agreement_sets, core, fidelity_lines, headline, int8_row, isa_lines, judge,
                         pct, row, title, verdict_line)
from edge.files import write_atomic
from targets import get_target

PARITY_RTOL = 1e-3  # float artifact vs PyTorch: max |diff| relative to the largest logit
# The artifacts that take the camera's pixels against themselves fed the host's preprocessing: float to the float
# conversion's tolerance; int8 top-1 on all but 1 % of images (a pixel the two normalisations round to the two
# sides of an int8 level can move a near-tie).
CAMERA_INPUT_MIN_SAME_TOP1 = 0.99
RUNTIME_ALIASES = {"tflite-runtime": "litert"}  # LiteRT's fallback package is the board's same runtime


def gate(cfg, validation: dict, ops: dict) -> dict:
    """The verdict (passed, failed or inconclusive), the fidelity figures behind it, and every failure."""
    fid = fidelity(validation["paired"], validation["agree"], validation["images"], cfg.max_drop)
    fid["calibration_agreement"] = _calibration_agreement(validation.get("agreement_unlabelled"))
    failures = _checks(validation["float_parity"], ops, get_target(cfg.target).full_integer)
    failures += _camera_input_checks(validation.get("camera_input"))
    failures += _below_agreement_floor(fid, cfg.agreement_floor)
    wanted = cfg.quant.min_agreement
    if wanted and (agreement := validation["accuracy"]["top1_agreement"]) < wanted:
        failures.append(f"int8 agrees with float on {agreement:.3f} of the validation images, below "
                        f"quant.min_agreement={cfg.quant.min_agreement}")
    return judge(fid, failures, cfg.strict)


def _calibration_agreement(extra: dict | None) -> dict | None:
    """Agreement on the calibration images that are not validation images: a figure of its own (no labels needed;
    int8 was calibrated on them, so it can be a little optimistic)."""
    if not extra or not extra["images"]:
        return None
    n, agree = extra["images"], extra["agree"]
    return {"images": n, "agree": agree, "agreement": agree / n, "ci95": list(wilson(agree, n))}


def _below_agreement_floor(fid: dict, floor: float) -> list[str]:
    """The label-free floor: on any image set whose agreement's whole 95 % interval lies below `floor`, int8 is not
    the float model, whatever the labels say (random weights, a broken conversion, shuffled outputs)."""
    return [f"int8 agrees with float on {pct(a)} of the {n} {name} (95 % interval {pct(ci[0])} to {pct(ci[1])}), wholly "
            f"below agreement_floor={floor:g}: the int8 model does not compute the float model"
            for name, a, ci, n in agreement_sets(fid) if floor and ci[1] is not None and ci[1] < floor]


def _checks(parity: dict, ops: dict, full_integer: bool) -> list[str]:
    """What fails the host's gate besides fidelity: a wrong float conversion, an int8 artifact that is not int8."""
    failures = []
    if parity["relative_diff"] > PARITY_RTOL:
        failures.append(
            f"the float artifact differs from PyTorch by {parity['relative_diff']:.2e} of the logit scale "
            f"(tolerance {PARITY_RTOL:g}): the conversion is wrong"
        )
    if ops.get("compute_ops_int8_input", 0) == 0:
        failures.append("the int8 artifact has no compute op with an int8 input: it is not quantized")
    elif full_integer and ops.get("float_compute_ops"):
        failures.append(f"float ops remain in the full-integer artifact: {', '.join(ops['float_compute_ops'][:8])}")
    return failures


def _camera_input_checks(camera: dict | None) -> list[str]:
    """What fails the gate in the artifacts the bundle ships, which take the camera's pixels."""
    if not camera:
        return []
    failures = []
    if camera["float"]["relative_diff"] > PARITY_RTOL:
        failures.append(f"the float artifact that takes pixels differs from the host's preprocessing by "
                        f"{camera['float']['relative_diff']:.2e} of the logit scale (tolerance {PARITY_RTOL:g})")
    same, upper = camera_int8_same_top1(camera)
    if upper < CAMERA_INPUT_MIN_SAME_TOP1:
        failures.append(f"the int8 artifact that takes pixels gives the host's top-1 on only {same:.3f} of "
                        f"{camera['images']} images (95 % interval up to {upper:.3f}; tolerance {CAMERA_INPUT_MIN_SAME_TOP1})")
    return failures


def camera_int8_same_top1(camera: dict) -> tuple[float, float]:
    """The int8 pixel artifact's share of images with the host's top-1, and the upper end of its 95 % interval.

    It is the same int8 model; where the runtime folds the normalisation into the input's quantizer, a pixel on
    a rounding boundary can land one step over and flip a near-tie (seen: 1 in 256 real photos, OpenVINO on
    AVX2). So the gate fails only when the images show the share below the tolerance, as a planted wrong recipe
    does, not on one such flip among a few images.
    """
    same, n = camera["int8"]["top1_agreement"], camera["images"]
    return same, wilson(round(same * n), n)[1]


def host_cores() -> int:
    """The cores this process may run on (a container or taskset can allow fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def latency_measured(target, runtime: dict, made_for: str, host_isa: str, cores: int | None = None) -> dict:
    """Where the latency figures come from: always this host. They are the board's only when the host ran the
    board's own runtime on the board's int8 arithmetic (the host is, or is like, the board); otherwise the label
    says so, so a Jetson report never passes ONNX Runtime on this CPU off as the Jetson's TensorRT.

    `runtime` is validation's {"int8": runner.runtime, "threads": runner.threads}; more threads than this host has
    cores never run at once, so the label gives the cores' count and the count asked for.
    """
    cores = cores or host_cores()
    engine = runtime["int8"].split(")")[0] + ")" if ")" in runtime["int8"] else runtime["int8"]
    ran = runtime["int8"].split(" ")[0]
    ran = RUNTIME_ALIASES.get(ran, ran)
    asked = int(runtime.get("threads") or cores)
    used = min(asked, cores)
    on_cpu = "CPU" in engine
    where = f"{engine}, {used} thread{'s' if used != 1 else ''}" if on_cpu else engine
    if on_cpu and asked > cores:
        where += f"; {asked} asked for, this host has {cores} cores"
    on_board = ran == target.device_runtime and made_for == host_isa
    label = f"latency on this host ({where})"
    if not on_board:
        label += f", not the {target.name} board's: run ./run.sh validate on the board for its own"
    note = None
    if ran != target.device_runtime:
        note = (f"this host ran {ran}, not the board's {target.device_runtime}: neither these times nor the int8/float "
                "ratio carry over to the board")
    return {"where": "host", "on_board": on_board, "runtime": engine, "target": target.name, "board_runtime": target.device_runtime,
            "threads": used if on_cpu else None, "threads_asked": asked if on_cpu else None, "host_cores": cores,
            "host": where, "label": label, "note": note}


def write_report(cfg, spec, preprocess, stages: dict, data_dir: Path, data_is_sample: bool, sample_count: int, log=print) -> dict:
    """Gate the artifact that ships and write report.json, report.md and latency.png into the run folder."""
    report = build_report(cfg, spec, preprocess, stages, data_dir, data_is_sample)
    run_dir = cfg.run_dir
    write_atomic(run_dir / "report.json", json.dumps(report, indent=2))
    write_atomic(run_dir / "report.md", markdown(report, sample_count))
    _plot(report, stages["validate"].result, run_dir / "latency.png")
    log(f"[report] {run_dir / 'report.md'}: {headline(report)}")
    return report


def _validated_on(arithmetic: dict) -> str:
    """The int8 ISA whose answers the gate judged: the board's, where its CPU was emulated; else this host's."""
    return arithmetic["board_isa"] if arithmetic["kind"] == "emulated" else detect_isa()


def _artifact(stage) -> Path:
    return stage.path(stage.result["artifact"])


def build_report(cfg, spec, preprocess, stages: dict, data_dir: Path, data_is_sample: bool) -> dict:
    """report.json: the keys the board's report shares (edge.report.core), then the host's own."""
    v = stages["validate"].result
    float_stage = stages["float"]
    int8_stage = stages[cfg.quant.mode] if cfg.quant.mode != "ptq" else stages["int8"]  # the artifact that ships
    ops = int8_stage.result["ops"]
    acc = v["accuracy"]
    report = core(
        model=spec.name, target=cfg.target, quant=cfg.quant_name, judged=gate(cfg, v, ops), artifact=_artifact(int8_stage),
        accuracy=accuracy_block(float_=acc["float"], float_artifact=acc["float_artifact"], int8=acc["int8"],
                                agreement=acc["top1_agreement"], images=v["images"], skipped=v["skipped"],
                                skipped_files=v["skipped_files"], max_drop=cfg.max_drop),
        latency=v["latency_ms"]["int8"], float_latency=v["latency_ms"]["float"], runtime=v["runtime"],
        size_mb={"float": artifact_size_mb(_artifact(float_stage)), "int8": artifact_size_mb(_artifact(int8_stage))},
        calibration=stages["calibration"].result,
        int8_isa={"made_for": cfg.board.isa, "validated_on": _validated_on(v["arithmetic"]), "recipe": get_target(cfg.target).recipe(cfg.quant, cfg.board.isa),
                  "unsaturated_sums": v["arithmetic"]["kind"] == "unsaturated", "judged_by": v["arithmetic"]},
    )
    report |= {
        "float_artifact": str(_artifact(float_stage)),
        "weights": stages["model"].result["weights"],
        "preprocess": preprocess.to_dict(),
        "data": {"folder": str(data_dir), "embedded_sample": data_is_sample},
        "float_parity": v["float_parity"],
        "camera_input": v.get("camera_input"),
        "int8_ops": ops,
        "executed_precisions": v["executed_precisions"],
        "layer_errors": v.get("layer_errors"),
        "field_agreement": v.get("field_agreement"),
        "stage_seconds": {name: s.seconds for name, s in stages.items()},
        "latency_measured": latency_measured(get_target(cfg.target), v["runtime"], cfg.board.isa, detect_isa()),  # latency: always this host
    }
    return report | _quant_sections(cfg.quant.mode, stages, v)


def _quant_sections(mode: str, stages: dict, v: dict) -> dict:
    """What QAT / accuracy-aware quantization did, and plain PTQ measured the same way for comparison."""
    if mode == "ptq":
        return {}
    ptq, q = stages["int8"], stages[mode].result
    sections = {"ptq": {
        "artifact": str(_artifact(ptq)),
        "accuracy": v["accuracy"]["ptq"],
        "top1_agreement": v["accuracy"]["ptq_top1_agreement"],
        "latency_ms": v["latency_ms"]["ptq"],
        "size_mb": artifact_size_mb(_artifact(ptq)),
        "int8_ops": ptq.result["ops"],
    }}
    if mode == "qat":
        sections["qat"] = {k: q.get(k) for k in ("history", "train_images", "train_folder", "train_split", "labels",
                                                   "validation_images_trained_on", "trained_on_validation_data")}
    if mode == "auto":
        sections["auto"] = {k: q.get(k) for k in ("method", "kept_precision", "reached_max_drop", "min_agreement", "reached_min_agreement",
                                                  "kept_float", "steps", "ptq", "final", "validation_images", "sensitivity")}
    return sections


def markdown(r: dict, sample_count: int) -> str:
    acc, parity = r["accuracy"], r["float_parity"]
    int8_label = f"**int8{' ' + r['quant'].split('-')[1].upper() if 'ptq' in r else ''}** ({r['runtime']['int8']})"
    lines = [title(r), "", *_verdict_lines(r), *_data_warnings(r, sample_count), "",
             f"Validated on {acc['images']} images from `{r['data']['folder']}` ({acc['skipped']} unreadable, skipped). "
             f"Weights: {r['weights']}.",
             "",
             *TABLE,
             row("float (PyTorch)", acc["float"], "—", None),
             row(f"float ({r['runtime']['float']})", acc["float_artifact"], parity["top1_agreement"], r["float_latency_ms"],
                 r["size_mb"]["float"]),
             *_ptq_row(r),
             int8_row(int8_label, r),
             *_latency_note(r["latency_measured"]),
             "",
             f"- Gate: int8 top-1 may fall at most {acc['max_drop_points']} points below float. Passed when the whole 95 % "
             "interval of the drop is within that, failed when the whole interval is beyond it, inconclusive otherwise.",
             f"- Float conversion check: max |logit difference| vs PyTorch {parity['max_abs_diff']:.2e} "
             f"({parity['relative_diff']:.1e} of the logit scale).",
             f"- Latency: batch 1, {r['latency_ms']['runs']} timed runs after warm-up, on this host ({r['latency_measured']['host']}).",
             _int8_graph_line(r),
             _camera_input_line(r.get("camera_input")),
             *isa_lines(r["int8_isa"]["made_for"], r["int8_isa"]["validated_on"], "host", r["int8_isa"]["recipe"],
                        emulated=r["int8_isa"]["judged_by"]["kind"] == "emulated"),
             arithmetic_line(r["int8_isa"]["judged_by"]),
             f"- Calibration: {r['calibration']['count']} images from `{r['calibration']['source']}`"
             f"{' (RANDOM)' if r['calibration']['random'] else ''}.",
             *_field_lines(r.get("field_agreement")),
             f"- Artifact: `{r['artifact']}`",
             *[f"- {note}" for note in r["int8_ops"].get("notes", [])],
             "",
             "![latency](latency.png)",
             ""]
    return "\n".join(lines + _qat_section(r) + _auto_section(r) + _layer_errors_section(r))


def arithmetic_line(a: dict) -> str:
    """Which int8 arithmetic the accuracy and agreement figures come from (pipeline.emulation.Arithmetic)."""
    note = f" ({a['note']})" if a.get("note") else ""
    timed = "" if a["kind"] == "host" else "; latency is timed in this host's own fused kernels"
    return f"- int8 judged in: {a['description']}{note}{timed}."


def _camera_input_line(c: dict | None) -> str:
    if not c:
        return "- Camera input: the board normalises each frame itself (numpy) and hands the artifact a float tensor."
    return (f"- Camera input: the bundle's runner takes the camera's BGR pixels ({c['pixel_type']}), cropped and resized on the board; "
            f"colour order, normalisation and layout are done by {c['by']}. Against the host's preprocessing on "
            f"{c['images']} images: float max |logit difference| {c['float']['max_abs_diff']:.2e}, int8 "
            f"{c['int8']['max_abs_diff']:.2e} (same top-1 on {c['int8']['top1_agreement']:.3f}); int8 p50 "
            f"{c['latency_ms']['p50']:.2f} ms with its preprocessing.")


def _field_lines(f: dict | None) -> list[str]:
    """CALIB from make capture: agreement on the frames held out from calibration (the shadow check's reference)."""
    if not f:
        return []
    if not f["images"]:
        return [f"- **Held-out captured frames: none readable in `{f['source']}`.**"]
    lo, hi = f["ci95"]
    return [f"- **Top-1 agreement with float on {f['images']} captured frames held out from calibration: "
            f"{pct(f['agreement'])} (95 % {pct(lo)} to {pct(hi)})**, the board's own camera (`{f['source']}`: the calibration "
            f"images above were drawn from its {f['calibration_frames']} other frames), no labels needed; `./run.sh --shadow N` "
            "compares the field with it."]


def _latency_note(m: dict) -> list[str]:
    """Under the table, where its latency columns are not the board's: say whose they are."""
    if m["on_board"]:
        return []
    return ["", f"**Mind the latency columns: {m['label']}.**" + (f" Note: {m['note']}." if m["note"] else "")]


def _data_warnings(r: dict, sample_count: int) -> list[str]:
    lines = []
    if r["calibration"]["random"]:
        lines.append("- **WARNING: calibrated on RANDOM data (CALIB=random). Accuracy of this int8 model is not to be trusted.**")
    if r["data"]["embedded_sample"]:
        lines.append(
            f"- **Note: no DATA given: validated on the embedded sample of only {sample_count} real photos. "
            "That shows the pipeline works; it is far too few images to measure accuracy. Pass DATA=folder.**"
        )
    return lines


def _int8_graph_line(r: dict) -> str:
    ops = r["int8_ops"]
    return (f"- int8 graph: {ops['compute_ops_int8_input']} of {ops['compute_ops']} compute ops read int8 "
            f"inputs ({100 * ops['int8_macs_share']:.1f} % of multiply-adds)"
            + (f"; the runtime, after its own graph transformations, executes {_precisions(r['executed_precisions'])}."
               if r["executed_precisions"] else "."))


def _precisions(counts: dict) -> str:
    """{'u8': 49, 'f32': 1} -> '50 compute layers: 49 in u8, 1 in f32'."""
    parts = ", ".join(f"{n} in {p}" for p, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"{sum(counts.values())} compute layers: {parts}"


def _verdict_lines(r: dict) -> list[str]:
    """What the verdict is, why, how sure (shared with the board's report), and what to do next (the host's)."""
    f = r["fidelity"]
    lines = verdict_line(r)
    if r["verdict"] == "inconclusive":
        lines += [f"**The int8 model is unverified: the bundle is {'not written (STRICT)' if r['strict'] else 'written and marked unverified'}. "
                  "Validate on more labelled images (DATA=folder) to settle it.**", ""]
    lines += fidelity_lines(f)
    if r["data"]["embedded_sample"]:
        lines += [f"**Next:** run it on your own labelled images: `make deploy TARGET={r['target']} MODEL={r['model']} "
                  "DATA=path/to/labelled/images` (one subfolder per class).", ""]
    elif r["verdict"] == "inconclusive" and f["images_to_resolve"]:
        lines += [f"**Next:** about {f['images_to_resolve']} labelled images would resolve MAX_DROP={f['max_drop_points']:g}.", ""]
    return lines


def _ptq_row(r: dict) -> list[str]:
    if "ptq" not in r:
        return []
    p = r["ptq"]
    return [row(f"int8 PTQ ({r['runtime']['int8']})", p["accuracy"], p["top1_agreement"], p["latency_ms"], p["size_mb"])]


def _layer_errors_section(r: dict) -> list[str]:
    if not r.get("layer_errors"):
        return []
    lines = ["## Layers with the largest int8 error", "",
             "Mean |int8 − float| / mean |float| of each op's output, on 4 calibration images, in graph order.", "",
             "| # | op | tensor | relative error |", "|---|---|---|---|"]
    lines += [f"| {e['index']} | {e['op']} | `{e['tensor']}` | {e['relative_error']:.3f} |" for e in r["layer_errors"]]
    return lines + [""]


def _qat_section(r: dict) -> list[str]:
    if "qat" not in r:
        return []
    q = r["qat"]
    lines = ["## Quantization-aware training", "",
             f"Started from NNCF's PTQ initialisation; {len(q['history'])} epoch(s) on {q['train_images']} images "
             f"from `{q['train_folder']}`" + (" (half of each class of DATA; every row of this report is validated on "
                                              "the other half, which QAT never saw)" if q.get("train_split") else "")
             + (", loss = cross-entropy + distillation from the float model." if q.get("labels", True) else
                ", no labels: loss = distillation from the float model alone (quant.qat_data=calibration); "
                "any of these images in DATA are left out of validation."), ""]
    if q.get("labels", True) and (r["accuracy"]["int8"]["top1"] or 0) > (r["accuracy"]["float"]["top1"] or 0):
        lines += ["- QAT's int8 top-1 is above the float model's: QAT is also more training on TRAIN_DATA, "
                  "which the float model did not get. Compare with PTQ for what quantization alone costs.", ""]
    if q["trained_on_validation_data"]:
        lines += [f"- **Note: QAT trained on {q.get('validation_images_trained_on', 'some')} of the validation images, "
                  "so the QAT accuracy above is optimistic. Pass TRAIN_DATA=folder with other images.**", ""]
    lines += ["| epoch | loss | top-1 agreement with float (training crops) |", "|---|---|---|"]
    lines += [f"| {h['epoch']} | {h['loss']:.4f} | {pct(h['train_agreement_with_float'])} |" for h in q["history"]]
    return lines + [""]


def _auto_section(r: dict) -> list[str]:
    if "auto" not in r:
        return []
    a = r["auto"]
    lines = ["## Accuracy-aware quantization", "",
             f"Method: {a['method']}. On {a['validation_images']} validation images: PTQ top-1 {pct(a['ptq']['top1'])} "
             f"({a['ptq']['drop_points']:.2f} points below float, p50 {a['ptq']['p50_ms']:.2f} ms) → "
             f"{pct(a['final']['top1'])} ({a['final']['drop_points']:.2f} points, p50 {a['final']['p50_ms']:.2f} ms); "
             f"MAX_DROP {'reached' if a['reached_max_drop'] else '**not reached**'}."
             + (f" Top-1 agreement with float {a['ptq']['agreement']:.3f} → {a['final']['agreement']:.3f}, quant.min_agreement "
                f"{a['min_agreement']} {'reached' if a['reached_min_agreement'] else '**not reached**'}." if a.get("min_agreement") else ""), ""]
    if a["kept_float"]:
        lines += [f"Layers kept out of int8 ({a['kept_precision']} on the board). Sensitivity: relative error of the logits when this "
                  "layer alone is int8 (PyTorch simulation); latency cost: the step in measured p50"
                  + (" (CPU plugin per-node counters)." if "nncf" in a["method"] else " after re-quantizing without it."), "",
                  "| layer | kind | sensitivity | latency cost ms | top-1 after |", "|---|---|---|---|---|"]
        for k in a["kept_float"]:
            sens = "—" if k.get("sensitivity") is None else f"{k['sensitivity']:.2e}"
            cost = "—" if k.get("latency_cost_ms") is None else f"{k['latency_cost_ms']:+.3f}"
            lines.append(f"| `{k['layer']}` | {k['kind']} | {sens} | {cost} | {pct(k.get('top1_after'))} |")
    else:
        lines.append("No layer was kept out of int8.")
    lines += ["", "Most sensitive layers (all measured):", "", "| layer | kind | sensitivity | top-1 agreement alone |",
              "|---|---|---|---|"]
    lines += [f"| `{s['layer']}` | {s['kind']} | {s['sensitivity']:.2e} | {pct(s['top1_agreement'])} |" for s in a["sensitivity"][:8]]
    return lines + [""]


def _plot_latency_words(m: dict) -> tuple[str, str]:
    """The latency panel's title (whose latency, with which runtime and threads) and, off the board, a caption saying so."""
    threads = f", {m['threads']} thread{'s' if m['threads'] != 1 else ''}" if m["threads"] else ""
    title = f"latency on this host\n({m['runtime']}{threads})"
    caption = "" if m["on_board"] else f"not the {m['target']} board's ({m['board_runtime']}): run ./run.sh validate there"
    return title, caption


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
    title, caption = _plot_latency_words(report["latency_measured"])
    ax1.set_title(title, fontsize=9)
    ax1.set_xlabel(caption, fontsize=8, color="#b00")
    ax1.margins(y=0.15)  # room for the p50 labels under the title
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

"""bench/README.md and its plots from bench/results.json."""
from __future__ import annotations

from pathlib import Path

from edge.files import write_atomic

# The camera program should keep at least this share of the rate its capture thread's own work leaves (issue 34).
CAMERA_FLOOR = 0.9


def _f(x, fmt="{:.2f}") -> str:
    return "n/a" if x is None else fmt.format(x)




def write_bench_report(r: dict, out: Path) -> None:
    """bench/README.md, one section per measurement, and its plots."""
    sections = (_header, _latency, _vendor_tools, _op_profile, _b0_cost_split, _accuracy, _camera_loop, _stage_cost, _scaling)
    lines = [line for section in sections for line in section(r)]
    write_atomic(out / "README.md", "\n".join(lines) + "\n")
    _plots(r, out)


def _header(r: dict) -> list[str]:
    m = r["machine"]
    return [
        "# Benchmark",
        "",
        f"{m['cpu']}, {m['cores']} cores ({', '.join(m['isa'])}), {m['threads']} threads; {m['date']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
        f"Batch 1, {r['config']['warmup']} warm-up runs, then {r['config']['runs']} timed runs per engine, "
        "engines interleaved in blocks of 10 runs (rotating order, one untimed settling run per block) in one process. OpenVINO fp32 is compiled with INFERENCE_PRECISION_HINT=f32 "
        "(it would run bf16 on this CPU otherwise); int8 artifacts likewise keep their float parts in f32.",
        "",
    ]


def _latency(r: dict) -> list[str]:
    lines = ["## Latency", ""]
    for model, mr in r["models"].items():
        lines += [f"### {model} ({mr['resolution']} px, {mr['weights']})", "",
                  "| engine | p50 ms | p90 ms | p99 ms | images/s | × PyTorch | × own fp32 | × own fp32, paired rounds (range) |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, row in mr["latency_ms"].items():
            paired = row.get("speedup_vs_own_fp32_paired")
            lines.append(f"| {name} | {row['p50']:.2f} | {row['p90']:.2f} | {row['p99']:.2f} | {row['throughput_fps']:.0f} "
                         f"| {row['speedup_vs_pytorch']:.2f} | {_f(row['speedup_vs_own_fp32'])} "
                         f"| {_paired(paired)} |")
        lines.append("")
    return lines + ["× own fp32, paired rounds: int8 and its fp32 take turns of about a second each; the median of the "
                    "rounds' ratios, with their range. It is the figure to read on a machine whose speed drifts.", "",
                    "![latency](latency.png)", ""]


def _paired(p: dict | None) -> str:
    return f"{p['ratio']:.2f} ({p['range'][0]:.2f}-{p['range'][1]:.2f})" if p else ""


def _vendor_tools(r: dict) -> list[str]:
    c = r["config"]
    lines = ["## Our timing against each runtime's own tool (same file, same threads)", "",
             f"Each of {c['vendor_rounds']} rounds runs the tool (about {c['vendor_seconds']:g} s) between two runs of ours "
             "(about half that each, averaged); the ratio is the median of the rounds' ratios, with their range. "
             "benchmark_app compiles the IR with our runner's own properties (-load_config).", "",
             "| model | engine | ours fed | tool | ours p50 ms | tool's median ms | ours / tool | rounds' range | our wrapper ms | on the capture thread ms |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    missing = {}
    for model, mr in r["models"].items():
        for name, row in mr["vendor_tools"].items():
            if row.get("ratio") is None:
                missing[name.rsplit(" ", 1)[0]] = row["why"]
                continue
            low, high = row["ratio_range"]
            lines.append(f"| {model} | {name} | {row.get('input', 'tensor')} | {row['tool']} | {row['ours_p50_ms']:.2f} | {row['theirs_median_ms']:.2f} "
                         f"| {row['ratio']:.3f} | {low:.2f}-{high:.2f} | {_f(row['wrapper_ms'], '{:.3f}')} | {_f(row.get('capture_thread_ms'), '{:.3f}')} |")
    lines += ["", "Ours is the inference call the camera program makes, fed what the bundle is fed: pixels (the camera's uint8 BGR "
              "frame) where the target's bundle takes them, else a normalised tensor. It includes the Python call, the input's "
              "copy into the runtime and the copy of the output (\"our wrapper\": ours minus the runtime's bare inference call, "
              "the two interleaved in blocks); the tools time the bare call, on an input set once. Where the runner maps the "
              "pixels to the model's input itself (LiteRT: a 256-entry table per channel, to its int8 input), the camera "
              "program does that on its capture thread, overlapping the previous frame's inference: its cost is the last "
              "column, not part of ours. On a shared VM a difference of two p50s still moves from run to run. The other "
              "tables time the normalised-tensor artifacts."]
    lines += [f"No tool for {runtime}: {why}." for runtime, why in missing.items()]
    return lines + [""]


def _op_profile(r: dict) -> list[str]:
    """Per model and runtime: fp32's and int8's time by op kind, and what it bounds int8's speed-up to."""
    rows = [(model, runtime, p) for model, mr in r["models"].items() for runtime, p in (mr.get("op_profile") or {}).items() if p]
    if not rows:
        return []
    lines = ["## Where the time goes (one thread, the runtime's own counters)", "",
             "Each op kind's ms per inference, the runtime's fused op types as it runs them (OpenVINO's with the precision "
             "it executed in), the top five per file. **Conv-bound** is fp32's whole run over int8's convolutions plus fp32's own "
             "non-convolution time: the int8 speed-up if int8's other ops cost what fp32's do; **ceiling**, if they cost nothing.", "",
             "| model | runtime | int8 ÷ fp32 | conv-bound | ceiling | fp32: top op kinds, ms | int8: top op kinds, ms |",
             "|---|---|---|---|---|---|---|"]
    for model, runtime, p in rows:
        top = {k: ", ".join(f"{op} {ms:.2f}" for op, ms in list(v.items())[:5]) for k, v in p["ops_ms"].items()}
        lines.append(f"| {model} | {runtime} | {p['int8_over_fp32']:.2f} | {_f(p['bound_if_int8_rest_cost_fp32s'])} "
                     f"| {_f(p['bound_if_int8_rest_were_free'])} | {top['fp32']} | {top['int8']} |")
    return lines + [""]


def _b0_cost_split(r: dict) -> list[str]:
    """The bench's B0 and B0 rebuilt without its swish and squeeze-excite (bench.cost_split), against Lite0's int8."""
    split = r.get("b0_cost_split")
    if not split:
        return []
    c = r["config"]
    lines = ["## What B0's int8 time is made of (B0 rebuilt, against Lite0's int8)", "",
             "The bench's B0, and B0 rebuilt with ReLU6 for its swish, without its squeeze-excite blocks, and both (Lite0's "
             "ops, about its multiply-adds), each quantized as the target quantizes B0 and timed in the runtime it deploys to "
             f"against Lite0's int8, in paired rounds ({c['vendor_rounds']} turns of about {c['vendor_seconds']:g} s each; "
             "median, with the range). Cost only: random weights.", "",
             "| runtime | model | int8 time ÷ lite0 int8's (range) |", "|---|---|---|"]
    for runtime, rows in split.items():
        lines += [f"| {runtime} | {variant} | {_paired(row['int8_time_over_lite0_int8'])} |" for variant, row in rows.items()]
    return lines + ["", "Where a runtime's last row reads about 1, its int8 kernels do B0's multiply-adds as fast as Lite0's: "
                    "the rest of B0's time is what its swish (evaluated on every expanded activation) and its squeeze-excite (a "
                    "pooling, two small convolutions and a per-channel multiply per block) cost in that runtime's int8 graph, "
                    "the rows above it say how much each.", ""]


def _accuracy(r: dict) -> list[str]:
    lines = ["## Accuracy (float vs int8, same images, target runtime)", ""]
    rows = [(model, t, a) for model, mr in r["models"].items() if mr["accuracy"] for t, a in mr["accuracy"].items() if a]
    if not rows:
        return lines + ["No model with real weights: no accuracy measured.", ""]
    data = {mr["data"] for mr in r["models"].values() if mr["data"]}
    lines += [f"On {', '.join(sorted(data))}.", "",
              "| model | target | float top-1 | int8 top-1 | float top-5 | int8 top-5 | agreement | images |", "|---|---|---|---|---|---|---|---|"]
    for model, t, a in rows:
        lines.append(f"| {model} | {t} | {a['float_top1']:.3f} | {a['int8_top1']:.3f} | {a['float_top5']:.3f} | {a['int8_top5']:.3f} "
                     f"| {a['agreement']:.3f} | {a['images']} |")
    return lines + ["", "![accuracy](accuracy.png)", ""]


def _camera_loop(r: dict) -> list[str]:
    lines = ["## Camera loop (openvino int8, generated 640x480 video)", "",
             "Reading every frame of the file as fast as possible, against the bare inference rate of the same artifact; "
             "then played live at 30 fps like a camera.", "",
             "| model | bare inference /s | camera program /s | lost to capture, preprocessing, bookkeeping | "
             "preprocess p50 ms | live: classified /s | live: dropped | live: frame age p50 / p99 ms |",
             "|---|---|---|---|---|---|---|---|"]
    for model, mr in r["models"].items():
        c = mr["camera_loop"]
        ev, live = c["every frame"], c["live at 30 fps"]
        lines.append(f"| {model} | {ev['bare_inference_fps']:.0f} | {ev['fps']:.0f} | {100 * c['loop_loss']:.1f} % "
                     f"| {ev['preprocess_ms']['p50']:.2f} | {live['fps']:.1f} | {live['dropped_stale']} "
                     f"| {live['age_ms']['p50']:.1f} / {live['age_ms']['p99']:.1f} |")
    lines += ["", "Capture (JPEG decoding) and preprocessing run on the capture thread, overlapping inference; on a "
              "2-core machine they still share the cores inference uses, so the loss is largest for the fastest model.", "",
              "### Both encodings, latency mode (default) and throughput mode (--mode throughput), every frame", "",
              "| model | source, mode | in flight | bare inference /s | camera program /s | camera / bare | expected from capture's work "
              "| camera ÷ expected (rounds' range) | capture + preprocess alone, ms | frame age p50 / p99 ms |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for model, mr in r["models"].items():
        c = mr["camera_loop"]
        for name, row in c.get("modes", {}).items():
            depth = c["in_flight"] if name.endswith("throughput") else 1
            work = row["capture_work"]
            lines.append(f"| {model} | {name} | {depth} | {row['bare_inference_fps']:.0f} | {row['fps']:.0f} | {row['camera_over_bare']:.2f} "
                         f"| {row['expected_ratio']:.2f} | {_over_expected(row)} | {work['capture_ms']:.2f} + {work['preprocess_ms']:.2f} "
                         f"| {row['age_ms']['p50']:.1f} / {row['age_ms']['p99']:.1f} |")
    rounds = r["config"].get("camera_rounds", 1)
    lines += ["", _rows_under(r, CAMERA_FLOOR), "", (f"Each row is the median of {rounds} rounds by camera ÷ expected, each "
              "round against its own bare rate. " if rounds > 1 else "") + "Bare inference: the same artifact fed from memory, one request at a time (latency) or with OpenVINO's "
              "queue kept full (throughput), measured just before and just after each row's run and averaged (a shared "
              "machine's speed drifts within a minute). MJPEG frames are decoded on the capture thread as a USB webcam's are; raw "
              "frames arrive ready as a CSI camera's do. Throughput mode trades each frame's age for frames per second.", "",
              "Expected from capture's work: the capture thread's work per frame (the source's read, decoding included, and "
              "the crop-and-resize, timed with nothing else running) comes wholly out of inference's time when inference "
              "keeps every core busy, giving inference / (inference + that work) of the bare rate; where a core is idle it "
              "takes that work alongside (1 while the work is shorter than one inference). An estimate, not a cap: "
              "inference leaves its cores some idle moments the capture thread uses, and a shared machine drifts, so rows "
              "land either side of it. The rows with a core left for capture run inference on one thread fewer, as on a "
              "board with a core to spare (a Pi has 4).", ""]
    return lines + _shadow_cost(r)


def _over_expected(row: dict) -> str:
    rounds = row.get("rounds_camera_over_expected")
    if not rounds:
        return "n/a"
    return f"{row['camera_over_expected']:.2f} ({min(rounds):.2f}-{max(rounds):.2f})"


def _rows_under(r: dict, floor: float) -> str:
    """One line: the camera rows whose camera ÷ expected is under `floor`, or that none is."""
    judged = {f"{model} {name}": row["camera_over_expected"] for model, mr in r["models"].items()
              for name, row in mr["camera_loop"].get("modes", {}).items() if "camera_over_expected" in row}
    under = [f"{row} ({ratio:.2f})" for row, ratio in judged.items() if ratio < floor]
    if not judged:
        return "Camera ÷ expected: not measured in this run."
    if not under:
        return f"**Camera ÷ expected: at least {floor} in every row.**"
    return f"**Camera ÷ expected under {floor} in {len(under)} row{'s' if len(under) > 1 else ''}:** " + "; ".join(under) + "."


def _shadow_cost(r: dict) -> list[str]:
    """The shadow check's price: --shadow N's frame rate against the camera program's own, every frame of the video."""
    lines = ["### Shadow check (`--shadow N`: the float model on one frame in N, on its own thread, 1 runtime thread)", "",
             "| model | shadow | camera program /s | vs without | frames shadowed | skipped (float busy) |", "|---|---|---|---|---|---|"]
    for model, mr in r["models"].items():
        for mode, row in (mr["camera_loop"].get("shadow") or {}).items():
            lines.append(f"| {model} | {mode} | {row['fps']:.0f} | {row['fps_ratio']:.2f}x | {row['shadowed']} | {row['skipped_busy']} |")
    return lines + ["", "A sampled frame that arrives while the float model is still busy is skipped, never queued: "
                    "the check costs CPU shared with int8, not waiting.", ""]


def _stage_cost(r: dict) -> list[str]:
    # the stages each deploy ran, in the chain's order, as its run recorded them (pipeline.bench.run.deploy_model)
    ran = list(dict.fromkeys(k for mr in r["models"].values() for st in mr["stage_seconds"].values() for k in st))
    lines = ["## Pipeline cost (seconds per deploy stage, as recorded by the run that made it)", "",
             "| model | target | " + " | ".join(ran) + " |", "|---" * (len(ran) + 2) + "|"]
    for model, mr in r["models"].items():
        for t, st in mr["stage_seconds"].items():
            lines.append(f"| {model} | {t} | " + " | ".join(_f(st.get(k), "{:.1f}") for k in ran) + " |")
    return lines


def _scaling(r: dict) -> list[str]:
    if not r["scaling"]:
        return []
    lines = ["", "## Scaling with the model (OpenVINO, random weights: cost only)", "",
             "| model | px | G MACs at px | paper GFLOPs | fp32 p50 ms | int8 p50 ms | fp32 MB | int8 MB |",
             "|---|---|---|---|---|---|---|---|"]
    for s in r["scaling"]:
        lines.append(f"| {s['model']} | {s['resolution']} | {s['gmacs']} | {s['published_gflops']} | {s['fp32_p50_ms']:.2f} | {s['int8_p50_ms']:.2f} | {s['fp32_mb']} | {s['int8_mb']} |")
    return lines + ["", "![scaling](scaling.png)", ""]


def _plots(r: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models = list(r["models"])
    engines = list(next(iter(r["models"].values()))["latency_ms"])
    fig, ax = plt.subplots(figsize=(max(6, 2.2 * len(models)), 3.6))
    width = 0.8 / len(engines)
    for i, e in enumerate(engines):
        vals = [r["models"][m]["latency_ms"].get(e, {}).get("p50", 0) for m in models]
        ax.bar(np.arange(len(models)) + i * width, vals, width, label=e)
    ax.set_xticks(np.arange(len(models)) + 0.4 - width / 2, models)
    ax.set_ylabel("p50 ms, batch 1")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"latency on {r['machine']['cpu']}, {r['machine']['threads']} threads")
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=90)
    plt.close(fig)

    rows = [(m, t, a) for m in models if r["models"][m]["accuracy"] for t, a in r["models"][m]["accuracy"].items() if a]
    if rows:
        fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(rows)), 3.2))
        x = np.arange(len(rows))
        ax.bar(x - 0.2, [100 * a["float_top1"] for _, _, a in rows], 0.4, label="float", color="#888")
        ax.bar(x + 0.2, [100 * a["int8_top1"] for _, _, a in rows], 0.4, label="int8", color="#2a7")
        ax.set_xticks(x, [f"{m}\n{t}" for m, t, _ in rows])
        ax.set_ylabel("top-1 %")
        ax.set_ylim(0, 100)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "accuracy.png", dpi=90)
        plt.close(fig)

    if r["scaling"]:
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        g = [s["gmacs"] for s in r["scaling"]]
        for key, label in (("fp32_p50_ms", "fp32"), ("int8_p50_ms", "int8")):
            ax.loglog(g, [s[key] for s in r["scaling"]], "o-", label=label)
        for s in r["scaling"]:
            ax.annotate(s["model"], (s["gmacs"], s["fp32_p50_ms"]), fontsize=8)
        ax.set_xlabel("G MACs at the resolution run")
        ax.set_ylabel("p50 ms (OpenVINO)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "scaling.png", dpi=90)
        plt.close(fig)

"""`make bench SUSTAINED=N`: the sustained run on this host (edge.sustained, the same code `./run.sh bench --minutes N`
runs on a board), for the first of MODELS deployed to the first installed CPU target: bench/sustained.json,
sustained.png and sustained.md, the bench report of the run."""
from __future__ import annotations

import platform
from pathlib import Path

from edge import sustained
from edge.files import write_atomic
from pipeline.bench.run import BenchConfig, _weights_for, bench_targets, deploy_model


def run_sustained(bc: BenchConfig, minutes: float, window_s: float = 60.0, log=print) -> dict:
    model, target = bc.models[0], bench_targets()[0]
    weights, _ = _weights_for(model, log)
    deployed = deploy_model(model, target, bc, weights, real=False, log=log)
    runner = deployed["deploy"].target.runner(deployed["int8"], bc.threads)
    for line in sustained.absent(sustained.Sensors()):
        log(f"[sustained] {line}")
    log(f"[sustained] {model} int8, {runner.runtime}, {runner.threads} thread(s): {minutes:g} min in windows of {window_s:g} s")
    result = sustained.run(runner.infer, deployed["deploy"].preprocess.blank(), minutes, window_s,
                           on_window=lambda row: log(sustained.window_line(row)))
    result.update(model=model, target=target, runtime=runner.runtime, threads=runner.threads, machine=platform.node())
    out = Path(bc.out)
    written = sustained.write(result, out / "sustained", f"{model} int8, {runner.runtime}, on {platform.node()}")
    write_atomic(out / "sustained.md", markdown(result, written))
    log(f"[sustained] {result['verdict']}")
    log(f"[sustained] {out / 'sustained.md'}")
    return result


def markdown(result: dict, written: dict) -> str:
    lines = [f"# Sustained run: {result['model']} int8 for {result['minutes']:g} min", "",
             f"{result['runtime']}, {result['threads']} thread(s), on {result['machine']}; batch 1, back to back, "
             f"in windows of {result['window_s']:g} s.", "", f"**{result['verdict']}**", ""]
    if written["plot"]:
        lines += [f"![latency and temperature against time]({Path(written['plot']).name})", ""]
    lines += ["| window | to s | p50 ms | p99 ms | images/s | CPU C | clock MHz | throttling |", "|---|---|---|---|---|---|---|---|"]
    for r in result["windows"]:
        cells = [f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['images_per_s']:.1f}",
                 *("-" if r[k] is None else f"{r[k]:.0f}" for k in ("temp_c", "clock_mhz")), r["throttled"] or "-"]
        lines.append(f"| {r['window']} | {r['end_s']:.0f} | " + " | ".join(cells) + " |")
    lines += [""] + [f"- {line}" for line in result["absent"]]
    if result["clock_source"]:
        lines.append(f"- clock read from {result['clock_source']}")
    return "\n".join(lines) + "\n"

"""choose.json, choose.md and choose.png from `make choose`'s result (pipeline/choose/run.py)."""
from __future__ import annotations

import json
from pathlib import Path

from edge.files import write_atomic


def _ms(row: dict, key: str) -> str:
    value = (row.get("latency_ms") or {}).get(key)
    return "-" if value is None else f"{value:.2f}"


def _top1(row: dict) -> str:
    return "-" if row.get("accuracy") is None else f"{100 * row['accuracy']:.1f}"


def _verdict(row: dict, result: dict) -> str:
    if row["model"] == result["choice"]:
        return "**choice**"
    p99 = (row.get("latency_ms") or {}).get("p99")
    if p99 is None:
        return row["status"]
    fits = "fits" if p99 <= result["budget_ms"] else "over budget"
    return fits if row.get("accuracy") is not None else f"{fits}; {row['accuracy_source']}"


def table(result: dict) -> list[str]:
    """The terminal's table: one line per candidate, cheapest first."""
    lines = [f"{'model':7} {'GMACs':>6} {'px':>4} {'p50 ms':>7} {'p99 ms':>7} {'top-1':>5}  "]
    for r in result["candidates"]:
        cached = " (cached)" if r.get("cached") else ""
        lines.append(f"{r['model']:7} {r['gmacs']:>6} {r.get('image_size', '-'):>4} {_ms(r, 'p50'):>7} {_ms(r, 'p99'):>7} "
                     f"{_top1(r):>5}  {_verdict(r, result).replace('**', '')}{cached}")
    return lines


def markdown(result: dict) -> str:
    budget, choice = result["budget_ms"], result["choice"]
    lines = [f"# Choosing an EfficientNet for {result['target']}: p99 within {budget:g} ms", "",
             f"Batch-1 latency of each int8 artifact in the target's runtime on {result['where']}; "
             f"accuracy: {_accuracy_words(result)}.", ""]
    if choice:
        lines += [f"**Choice: {choice}**, the most accurate candidate whose p99 fits"
                  + (f"; the next larger, more accurate one, {result['next_larger']}, does not." if result["next_larger"] else "."), "",
                  "    " + result["deploy_command"], ""]
    else:
        lines += [f"**{result['nothing_fits'][0].upper()}{result['nothing_fits'][1:]}.**", ""]
    lines += ["| model | GMACs | input px | p50 ms | p99 ms | top-1 % | accuracy | verdict |", "|---|---|---|---|---|---|---|---|"]
    for r in result["candidates"]:
        lines.append(f"| {r['model']} | {r['gmacs']} | {r.get('image_size', '-')} | {_ms(r, 'p50')} | {_ms(r, 'p99')} | {_top1(r)} "
                     f"| {r.get('accuracy_source', '-')} | {_verdict(r, result)} |")
    lines += ["", "![accuracy against p99 latency](choose.png)", "",
              "Candidates run cheapest first (MACs counted from each model at the resolution it ran at); once one's p50 "
              f"is over {result['margin']:g}x the budget, larger ones of its architecture (Lite; B and φ) are not measured. Each measurement is cached in "
              "its candidate's run folder, keyed by the int8 artifact's content: this run measured {result['measured']} and reused {result['cached']}."]
    if result["image_size"]:
        lines += ["", f"All candidates ran at {result['image_size']} px, not their own resolutions: published top-1 figures "
                  "are for the native resolutions and do not hold here; deploy at the chosen size with the command above."]
    return "\n".join(lines) + "\n"


def _accuracy_words(result: dict) -> str:
    if result["data"]:
        return f"int8 top-1 measured on {result['data']}"
    return ("ImageNet top-1 as published for the pretrained weights (models with no offline weights are timed on random "
            "ones and need training before they can be chosen)")


def pareto_front(rows: list[dict]) -> list[dict]:
    """The candidates no other is both faster (p99) and at least as accurate as."""
    points = sorted((r for r in rows if r.get("accuracy") is not None and r.get("latency_ms")),
                    key=lambda r: (r["latency_ms"]["p99"], -r["accuracy"]))
    front, best = [], -1.0
    for r in points:
        if r["accuracy"] > best:
            front.append(r)
            best = r["accuracy"]
    return front


def plot(result: dict, path: Path) -> None:
    """Top-1 against p99: the budget as a vertical line, the Pareto front, the choice and the next larger marked.
    Candidates with no accuracy sit on a strip at the bottom."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["candidates"] if r.get("latency_ms")]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    strip = ax.get_xaxis_transform()  # x in data, y in axes: the bottom strip

    def place(r: dict, **kw):
        if r.get("accuracy") is None:
            return ax.scatter([r["latency_ms"]["p99"]], [0.04], transform=strip, **kw)
        return ax.scatter([r["latency_ms"]["p99"]], [100 * r["accuracy"]], **kw)

    for r in rows:
        place(r, color="0.45", marker="o" if r.get("accuracy") is not None else "x", zorder=2)
        y, tf = (100 * r["accuracy"], ax.transData) if r.get("accuracy") is not None else (0.04, strip)
        ax.annotate(r["model"], (r["latency_ms"]["p99"], y), xycoords=tf, textcoords="offset points", xytext=(5, 4), fontsize=8)
    front = pareto_front(rows)
    if front:
        ax.plot([r["latency_ms"]["p99"] for r in front], [100 * r["accuracy"] for r in front], "-", color="C0",
                drawstyle="steps-post", zorder=1, label="Pareto front (best top-1 within each p99)")
    ax.axvline(result["budget_ms"], color="C3", linestyle="--", label=f"budget: p99 {result['budget_ms']:g} ms")
    by_name = {r["model"]: r for r in rows}
    if result["choice"] in by_name:
        place(by_name[result["choice"]], marker="*", s=260, color="C2", zorder=3, label=f"choice: {result['choice']}")
    if result["next_larger"] in by_name:
        place(by_name[result["next_larger"]], marker="o", s=220, facecolors="none", edgecolors="C3", linewidths=2,
              zorder=3, label=f"next larger: {result['next_larger']}")
    # every timed candidate and the budget in view (the strip's points do not widen the axes by themselves)
    ax.set_xlim(0, 1.08 * max([result["budget_ms"], *(r["latency_ms"]["p99"] for r in rows)]))
    ax.set_xlabel(f"int8 p99 latency, ms (batch 1, {result['target']} on {result['where']})")
    ax.set_ylabel("top-1 %" + (" (int8, measured)" if result["data"] else " (published)"))
    ax.set_title("Accuracy against latency" + ("; x: no accuracy (needs training)" if any(
        r.get("accuracy") is None for r in rows) else ""), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_reports(result: dict, folder: Path) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / "choose.json", json.dumps(result, indent=2))
    write_atomic(folder / "choose.md", markdown(result))
    plot(result, folder / "choose.png")

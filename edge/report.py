"""The validation report both sides write: report.json's shared keys and report.md's shared parts.

The host (pipeline/ship/report.py) validates before it ships and the board (`./run.sh validate`) after; the two
reports are read side by side, so the verdict, its reasons, the ISA check and the accuracy/latency rows
are built here once. Each side adds its own keys and sections. Board side: it imports only edge.
"""
from __future__ import annotations

from edge.isa import describe as describe_isa
from edge.metrics import ships

LATENCY_KEYS = ("p50", "p90", "p99", "mean", "runs")
SKIPPED_LISTED = 50  # unreadable files named in report.json; "skipped" counts them all
NO_FLOAT = "the bundle has no float model to compare with"
TABLE = ["| | top-1 | top-5 | top-1 agreement with float (validation images) | p50 ms | p90 ms | p99 ms | images/s | size MB |",
         "|---|---|---|---|---|---|---|---|---|"]
MISMATCH = {
    "host": "- **The board's int8 arithmetic differs from this host's: its results can differ from these. "
            "Run `./run.sh validate --data DIR` on the board.**",
    "board": "- **This board's int8 arithmetic is not the one the model was made for: its results can differ from "
             "the host's. This validation is the one that counts.**",
}


# -- report.json ------------------------------------------------------------------------------------

def judge(fid: dict | None, checks: list[str], strict: bool) -> dict:
    """The verdict: failed if the fidelity gate or any check failed, else the gate's (inconclusive without one)."""
    failures = ([fid["reason"]] if fid and fid["verdict"] == "failed" else []) + list(checks)
    verdict = "failed" if failures else fid["verdict"] if fid else "inconclusive"
    return {"verdict": verdict, "passed": verdict == "passed", "ships": ships(verdict, strict), "strict": bool(strict),
            "failures": failures, "fidelity": fid}


def accuracy_block(*, float_: dict | None, int8: dict, agreement, images: int, skipped: int, skipped_files: list,
                   max_drop: float, **extra) -> dict:
    """report["accuracy"]. `float_` is the reference the gate compares with; `extra` (the host's float_artifact) follows it."""
    return {"float": float_, **extra, "int8": int8, "top1_agreement": agreement, "images": int(images),
            "skipped": int(skipped), "skipped_files": list(skipped_files[:SKIPPED_LISTED]), "max_drop_points": max_drop}


def core(*, model: str, target: str, quant: str, judged: dict, artifact, accuracy: dict, latency: dict,
         float_latency: dict | None, runtime: dict, size_mb: dict, calibration, int8_isa: dict) -> dict:
    """The keys every report.json has, host or board. `judged` is judge()'s dict; `latency` the int8 artifact's."""
    return {
        "model": model, "target": target, "quant": quant, **judged, "artifact": str(artifact), "accuracy": accuracy,
        "latency_ms": {k: latency[k] for k in LATENCY_KEYS}, "throughput_fps": latency["throughput_fps"],
        "float_latency_ms": float_latency, "runtime": runtime, "size_mb": size_mb, "calibration": calibration,
        "int8_isa": int8_isa,
    }


def isa_mismatch(made_for: str | None, here: str, side: str) -> bool:
    """Whether the int8 arithmetic measured here is not the one the artifact was made for."""
    if not made_for:  # not recorded: nothing to compare with
        return False
    # TensorRT's int8 runs on the board's GPU, which it was made for; the board's CPU does not enter into it.
    return made_for != here and not (side == "board" and made_for == "gpu")


# -- report.md --------------------------------------------------------------------------------------

def pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def title(r: dict, where: str = "") -> str:
    return f"# {r['model']} → {r['target']} ({r['quant']}){where}: {r['verdict'].upper()}"


def reason(r: dict) -> str:
    return r["fidelity"]["reason"] if r["fidelity"] else NO_FLOAT


def headline(r: dict) -> str:
    """One line: the verdict and why, then the agreement figures."""
    figures = f" ({agreement_phrase(r['fidelity'])})" if r["fidelity"] else ""
    if r["verdict"] == "failed":
        return "FAILED: " + "; ".join(r["failures"]) + figures
    word = "PASSED" if r["verdict"] == "passed" else "INCONCLUSIVE" + (" (STRICT: counts as a failure)" if r["strict"] else "")
    return f"{word}: {reason(r)}{figures}"


CALIBRATION_SET = "calibration images outside validation (no labels needed; int8 was calibrated on them)"


def agreement_sets(f: dict) -> list[tuple[str, float, list, int]]:
    """Top-1 agreement of int8 with float, one figure per image set: (set, agreement, 95 % interval, images). The
    validation images always; the host adds the calibration images that are not validation images (no labels needed)."""
    sets = [("validation images", f["agreement"], f["agreement_ci95"] or [None, None], f["agreement_images"])]
    c = f.get("calibration_agreement")
    if c and c["images"]:
        sets.append((CALIBRATION_SET, c["agreement"], c["ci95"], c["images"]))
    return sets


def agreement_phrase(f: dict) -> str:
    """The agreement figures in one phrase, as the console, the bundle's README and ./run.sh validate print them."""
    return "; ".join(f"top-1 agreement with float {pct(a)} on the {n} {name}" for name, a, _, n in agreement_sets(f))


def verdict_line(r: dict) -> list[str]:
    why = " ".join(f"{x}." for x in r["failures"]) if r["failures"] else f"{reason(r)}."
    return [f"**Verdict: {r['verdict']}.** {why}", ""]


def fidelity_lines(f: dict | None) -> list[str]:
    """The figures behind the verdict: the drop and the agreement with their intervals, and the paired outcomes."""
    if not f:
        return []
    lo, hi = f["drop_ci95_points"]
    p = f["paired"]
    return [
        "| fidelity to float | measured | 95 % interval | images |",
        "|---|---|---|---|",
        f"| int8 top-1 drop (points) | {f['drop_points']:+.2f} | {lo:+.2f} to {hi:+.2f} | {f['images']} labelled |",
        *(f"| top-1 agreement with float on the {name} | {pct(a)} | {pct(ci[0])} to {pct(ci[1])} | {n} |"
          for name, a, ci, n in agreement_sets(f)),
        "",
        f"Paired outcomes: {p['both_right']} right in both, {p['float_only']} right only in float, "
        f"{p['int8_only']} right only in int8, {p['both_wrong']} wrong in both.",
        "",
    ]


def isa_lines(made_for: str | None, here: str, side: str, recipe: dict | None = None, emulated: bool = False) -> list[str]:
    """Which int8 arithmetic the artifact was made for and which this side measured it on (`emulated`: on that CPU
    emulated here); a warning when they differ."""
    quantizer = ""
    if recipe:
        quantizer = " (quantizer: " + (recipe["none"] if "none" in recipe else ", ".join(f"{k}={v}" for k, v in recipe.items())) + ")"
    made = describe_isa(made_for) if made_for else "?"
    where = f"an emulated **{describe_isa(here)}** on this {side}" if emulated else f"this {side}'s **{describe_isa(here)}**"
    lines = [f"- int8 made for **{made}**{quantizer}; validated on {where}."]
    return lines + ([MISMATCH[side]] if isa_mismatch(made_for, here, side) else [])


def row(label: str, accuracy: dict, agreement, latency: dict | None, size_mb=None) -> str:
    """One line of TABLE: an artifact measured in its runtime. `agreement` is a fraction, or text ("—" for the
    reference itself); `latency` and `size_mb` None leave their cells empty (not measured there)."""
    times = [f"{latency[k]:.2f}" for k in ("p50", "p90", "p99")] + [f"{latency['throughput_fps']:.1f}"] if latency else [""] * 4
    cells = [label, pct(accuracy["top1"]), pct(accuracy["top5"]), agreement if isinstance(agreement, str) else pct(agreement),
             *times, "" if size_mb is None else str(size_mb)]
    return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"


def int8_row(label: str, r: dict) -> str:
    """The shipped int8 artifact's row, from a report (or the host's figures the bundle carries to the board)."""
    return row(label, r["accuracy"]["int8"], r["accuracy"]["top1_agreement"],
               {**r["latency_ms"], "throughput_fps": r["throughput_fps"]}, r.get("size_mb", {}).get("int8"))

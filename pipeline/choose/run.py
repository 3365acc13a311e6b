"""`make choose TARGET=... BUDGET_MS=...`: the most accurate EfficientNet whose int8 p99 latency fits a budget.

The recipe, top to bottom:
1. the candidates in order of cost (MACs counted at the resolution each runs at, pipeline/model/costs.py),
   each with the accuracy it can claim: the published top-1 for pretrained weights, the measured int8
   top-1 with DATA, none ("needs training") for a model with no offline weights, whose latency is
   still measured, on random ones;
2. each deployed up to its int8 artifact by the deploy chain's own cached stages (pipeline.chain) (one run folder per candidate
   under the choose folder, calibrated on real photos: the bundled sample or DATA), then timed at
   batch 1 in the target's runtime: here (edge.latency, deploy's thread handling), or on the board
   over ssh by the bundle's own `./run.sh latency`. The timing is one more cached stage, keyed by the
   int8 artifact's content, so an unchanged re-run measures nothing;
3. once a candidate's p50 is over the budget by MARGIN, larger ones of its architecture are listed, not measured;
4. the pick: the most accurate candidate whose p99 fits;
5. choose.json, choose.md and choose.png (accuracy against p99, the budget and the Pareto front).
"""
from __future__ import annotations

import json
import math
import platform
import shlex
import time
from dataclasses import dataclass
from pathlib import Path


from pipeline import PipelineError


from pipeline.ship import push
from pipeline.config import at_least, make_config
from pipeline.model.costs import cost
from pipeline.data.folders import check_folder, labelled_samples
from pipeline.chain import Chain
from pipeline.stages.keys import code_digest
from pipeline.stages import judge
from pipeline.model.family import FAMILY, ModelSpec, get_spec
from pipeline.model.labels import imagenet_names
from pipeline.model.load import load
from pipeline import scores as val
from targets import TARGETS

# A candidate whose p50 is this many times the budget cannot fit on a quieter run; larger ones are skipped.
MARGIN = 1.5
NEEDS_TRAINING = "needs training"


@dataclass(frozen=True)
class ChooseConfig:
    target: str
    budget_ms: float
    models: tuple[str, ...] = ()  # () = the whole family table
    data: str | None = None  # labelled ImageNet-class folder: accuracy measured, not published
    image_size: int | None = None  # None = each model's own resolution (smaller: a quick, cheaper comparison)
    calib_size: int | None = None  # None = deploy's default
    warmup: int | None = None  # None = the target profile's
    runs: int | None = None
    margin: float = MARGIN
    settings: tuple[str, ...] = ()  # KEY=VALUE deploy settings for every candidate (SET=, e.g. quant.bias_correction=fast)
    device: push.Device | None = None  # time on this board over ssh instead of here
    device_install: bool = False  # pip-install the bundle's requirements into its .venv on the board first
    out: str | None = None

    def __post_init__(self):
        if self.target not in TARGETS:
            raise PipelineError(f"unknown target {self.target!r}; valid targets: {', '.join(sorted(TARGETS))}")
        if isinstance(self.budget_ms, bool) or not isinstance(self.budget_ms, (int, float)) \
                or not math.isfinite(self.budget_ms) or self.budget_ms <= 0:
            raise PipelineError(f"BUDGET_MS={self.budget_ms!r} must be a positive number of milliseconds, e.g. BUDGET_MS=20")
        for m in self.models:
            get_spec(m)
        for name, low in (("image_size", 32), ("calib_size", 1), ("warmup", 0), ("runs", 1)):
            at_least(name, getattr(self, name), low, optional=True)
        at_least("margin", self.margin, 1)
        make_config(self.target, self.deploy_settings())  # a bad SET is one line now, not at the first candidate

    def deploy_settings(self) -> dict:
        pairs = [item.partition("=") for item in self.settings]
        if bad := [k for k, eq, _ in pairs if not eq]:
            raise PipelineError(f"SET takes KEY=VALUE, got {bad[0]!r}")
        return {k: v for k, _, v in pairs}

    @property
    def folder(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / f"choose-{self.target}"

    @property
    def where(self) -> str:
        return f"board {self.device.address}" if self.device else f"this host ({platform.node()})"


def parse_budget(text) -> float:
    """BUDGET_MS as given on the command line: a number, else one line."""
    if text is None or not str(text).strip():
        raise PipelineError("BUDGET_MS is required: the p99 latency in milliseconds the model must fit, e.g. "
                            "make choose TARGET=openvino BUDGET_MS=20")
    try:
        return float(text)
    except ValueError:
        raise PipelineError(f"BUDGET_MS={text!r} is not a number of milliseconds; e.g. make choose TARGET=openvino BUDGET_MS=20") from None


def parse_models(text: str | None) -> tuple[str, ...]:
    """MODELS=lite0,b0,...: the table's names, each checked (an unknown one names the valid ones)."""
    names = [m.strip() for m in (text or "").split(",") if m.strip()]
    try:
        return tuple(dict.fromkeys(get_spec(m).name for m in names))
    except PipelineError as e:
        raise PipelineError(f"MODELS: {e}") from None


# -- 1. candidates ------------------------------------------------------------------------------
def candidates(cfg: ChooseConfig) -> list[ModelSpec]:
    """Cheapest first (MACs at the resolution each runs at; ties keep table order), so the early stop skips only
    larger ones."""
    specs = [get_spec(m) for m in cfg.models] if cfg.models else list(FAMILY.values())
    return sorted(specs, key=lambda s: cost(s, cfg.image_size).macs)


def check_inputs(cfg: ChooseConfig) -> None:
    """Everything a user can get wrong, before any model work: the board answers, DATA holds ImageNet classes."""
    if cfg.device:
        push.reach(cfg.device)
    if cfg.data:
        labelled_samples(check_folder(cfg.data), imagenet_names(), "DATA", "the pretrained candidates")


def pretrained_weights(spec: ModelSpec) -> tuple[str | None, str]:
    """(None, source) when the table's pretrained weights load offline; else ("random", why): latency only."""
    try:
        return None, load(spec).weights
    except PipelineError as e:
        return "random", str(e)


# -- 2. measure ---------------------------------------------------------------------------------
def measure_candidate(cfg: ChooseConfig, spec: ModelSpec, log=print) -> dict:
    """Deploy up to int8 (cached stages), time it (a cached stage too), and say what accuracy it can claim."""
    weights, weights_source = pretrained_weights(spec)
    values = {**cfg.deploy_settings(), "model": spec.name, "data": cfg.data, "weights": weights, "image_size": cfg.image_size,
              "calib_size": cfg.calib_size, "warmup": cfg.warmup, "runs": cfg.runs,
              "out": str(cfg.folder / "candidates" / spec.name)}
    deploy = Chain(make_config(cfg.target, values), log=lambda line: log(f"{spec.name:6} {line}"))
    deploy.ctx.check_inputs("int8")
    int8 = deploy.stage("int8")
    timing = time_on_board(cfg, deploy, int8, log) if cfg.device else time_here(deploy, int8)
    accuracy, source = claimed_accuracy(cfg, spec, deploy, weights)
    row = {"model": spec.name, "gmacs": _gmacs(cfg, spec), "image_size": deploy.ctx.preprocess.image_size,
           "weights": weights_source if weights is None else f"random (no offline weights: {weights_source})",
           "accuracy": accuracy, "accuracy_source": source, "run_folder": str(deploy.ctx.cfg.run_dir)}
    if timing is None:
        return {**row, "status": "not measured: its int8 failed the gate, so there is no bundle to time on the board",
                "latency_ms": None}
    return {**row, "status": "measured", "latency_ms": timing.result["latency_ms"], "runtime": timing.result["runtime"],
            "threads": timing.result["threads"], "where": timing.result["where"],
            "measured_at": timing.result["measured_at"], "cached": timing.skipped}


def time_here(deploy: Chain, int8):
    """Batch-1 latency of the int8 artifact in the target's runtime on this host, as validation times it."""
    ctx = deploy.ctx
    cfg = ctx.cfg
    key = {"int8": int8.digest, "code": code_digest("validate", ctx.target), "where": "host", "threads": ctx.host_threads,
           "precision": cfg.precision, "warmup": cfg.warmup, "runs": cfg.runs}

    def work(tmp: Path) -> dict:
        runner = judge.runner(ctx, int8.artifact)
        latency = val.latency(runner, ctx.preprocess.blank(), cfg.warmup, cfg.runs)
        return {"latency_ms": latency, "runtime": runner.runtime, "threads": runner.threads,
                "where": f"this host ({platform.node()})", "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    return ctx.run.stage("latency", key, work)


BOARD_LATENCY = 'cd "$1" && shift && exec ./run.sh latency "$@"'


def time_on_board(cfg: ChooseConfig, deploy: Chain, int8, log=print):
    """The bundle (deploy's own, gate included) pushed to the board and timed there by its `./run.sh latency`;
    None when the gate kept the bundle back."""
    report = deploy.stage("report")
    if not report["ships"]:
        return None
    device, dcfg = cfg.device, deploy.ctx.cfg
    key = {"int8": int8.digest, "code": code_digest("validate", deploy.ctx.target), "where": [device.address, device.port, device.dest],
           "warmup": dcfg.warmup, "runs": dcfg.runs}

    def work(tmp: Path) -> dict:
        push.copy(dcfg.run_dir / "bundle", device, log)  # one folder on the board: its .venv stays between candidates
        if cfg.device_install:
            push.install(device, log)
        out = push.remote_output(device, BOARD_LATENCY, "--warmup", str(dcfg.warmup), "--runs", str(dcfg.runs),
                                 what=f"./run.sh latency on {device.address}")
        measured = json.loads(out.strip().splitlines()[-1])
        latency = {k: measured[k] for k in ("p50", "p90", "p99", "mean", "runs", "throughput_fps")}
        return {"latency_ms": latency, "runtime": measured["runtime"], "threads": measured["threads"],
                "where": f"board {device.address} ({measured['machine']})", "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    return deploy.ctx.run.stage("latency-board", key, work)


def claimed_accuracy(cfg: ChooseConfig, spec: ModelSpec, deploy: Chain, weights: str | None) -> tuple[float | None, str]:
    if weights == "random":
        return None, NEEDS_TRAINING
    if cfg.data:  # deploy's own validation stage, cached like the others
        return deploy.stage("validate").result["accuracy"]["int8"]["top1"], "measured int8 top-1 on DATA"
    if spec.weights.top1 is None:
        return None, "unknown: no published top-1; pass DATA to measure it"
    return spec.weights.top1, "published ImageNet top-1"


def _gmacs(cfg: ChooseConfig, spec: ModelSpec) -> float:
    return round(cost(spec, cfg.image_size).gmacs, 3)


def measure_all(cfg: ChooseConfig, specs: list[ModelSpec], log=print) -> list[dict]:
    """Each candidate in cost order, until one is over the budget by the margin: then the larger ones *of its
    architecture* are listed, not measured. MACs predict latency only within one: B1 (swish, squeeze-excite) took
    longer than Lite2 (ReLU6, none) with fewer MACs on this project's host."""
    rows: list[dict] = []
    stopped_by: dict[str, str] = {}  # architecture (its activation) -> why its larger ones are not measured
    for spec in specs:
        if spec.activation in stopped_by:
            rows.append({"model": spec.name, "gmacs": _gmacs(cfg, spec), "accuracy": None, "latency_ms": None,
                         "status": f"not measured: larger than {stopped_by[spec.activation]}"})
            continue
        row = measure_candidate(cfg, spec, log)
        rows.append(row)
        p50 = (row["latency_ms"] or {}).get("p50")
        if p50 is not None and p50 > cfg.margin * cfg.budget_ms:
            stopped_by[spec.activation] = (f"{spec.name}, whose p50 {p50:.2f} ms is over {cfg.margin:g}x the "
                                           f"{cfg.budget_ms:g} ms budget")
    return rows


# -- 3. pick ------------------------------------------------------------------------------------
def p99(row: dict) -> float | None:
    return (row.get("latency_ms") or {}).get("p99")


def pick(rows: list[dict], budget_ms: float) -> dict | None:
    """The most accurate candidate whose p99 fits (a tie goes to the faster); one with no accuracy is never picked."""
    fits = [r for r in rows if p99(r) is not None and p99(r) <= budget_ms and r["accuracy"] is not None]
    return max(fits, key=lambda r: (r["accuracy"], -p99(r)), default=None)


def next_larger(rows: list[dict], choice: dict | None) -> dict | None:
    """The first candidate after the choice in cost order that the budget ruled out: a more accurate one. Larger ones
    with no accuracy (needs training, or not measured) could not have been picked, so they are not it."""
    if choice is None:
        return None
    later = rows[rows.index(choice) + 1:]
    return next((r for r in later if r["accuracy"] is not None and r["accuracy"] > choice["accuracy"]), None)


def deploy_command(cfg: ChooseConfig, model: str) -> str:
    """The deploy that makes the chosen int8 artifact again (same settings), for the board."""
    values = {"TARGET": cfg.target, "MODEL": model, "DATA": cfg.data, "IMAGE_SIZE": cfg.image_size,
              "CALIB_SIZE": cfg.calib_size, "SET": " ".join(cfg.settings) or None,
              "DEVICE": cfg.device.address if cfg.device else None}
    return " ".join(["make deploy", *(f"{k}={shlex.quote(str(v))}" for k, v in values.items() if v is not None)])


def nothing_fits(cfg: ChooseConfig, rows: list[dict]) -> str:
    """The one line for no pick: the fastest candidate's p99, and a fitting one that only lacks an accuracy."""
    measured = [r for r in rows if p99(r) is not None]
    if not measured:
        return f"no candidate could be timed on {cfg.where}; see {cfg.folder / 'choose.md'}"
    fastest = min(measured, key=p99)
    line = (f"nothing fits BUDGET_MS={cfg.budget_ms:g} on {cfg.target} ({cfg.where}): the fastest candidate, "
            f"{fastest['model']}, took p99 {p99(fastest):.2f} ms")
    untrained = [r for r in measured if p99(r) <= cfg.budget_ms and r["accuracy"] is None]
    if untrained:
        line = (f"nothing with a known accuracy fits BUDGET_MS={cfg.budget_ms:g} on {cfg.target} ({cfg.where}): "
                f"{untrained[-1]['model']} fits at p99 {p99(untrained[-1]):.2f} ms but {untrained[-1]['accuracy_source']} "
                f"(make train MODEL={untrained[-1]['model']} DATA=..., then make deploy ... WEIGHTS=runs/{untrained[-1]['model']}-train/best.pt)")
    return line


# -- 4. the whole recipe ------------------------------------------------------------------------
def choose(cfg: ChooseConfig, log=print) -> dict:
    """Measure, pick and write choose.json/.md/.png; a PipelineError (one line) when nothing fits."""
    from pipeline.choose.report import table, write_reports

    check_inputs(cfg)
    specs = candidates(cfg)
    log(f"[choose] {len(specs)} candidate(s) for {cfg.target}, p99 budget {cfg.budget_ms:g} ms, timed on {cfg.where}: "
        + ", ".join(s.name for s in specs))
    rows = measure_all(cfg, specs, log)
    choice = pick(rows, cfg.budget_ms)
    larger = next_larger(rows, choice)
    result = {
        "target": cfg.target, "budget_ms": cfg.budget_ms, "where": cfg.where, "data": cfg.data,
        "image_size": cfg.image_size, "margin": cfg.margin, "candidates": rows,
        "choice": choice["model"] if choice else None, "next_larger": larger["model"] if larger else None,
        "deploy_command": deploy_command(cfg, choice["model"]) if choice else None,
        "nothing_fits": None if choice else nothing_fits(cfg, rows),
        "measured": sum(1 for r in rows if r["status"] == "measured" and not r["cached"]),
        "cached": sum(1 for r in rows if r.get("cached")),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_reports(result, cfg.folder)
    log("\n".join(table(result)))
    if choice is None:
        raise PipelineError(result["nothing_fits"])
    log(f"choice: {choice['model']} (top-1 {100 * choice['accuracy']:.1f} %, {choice['accuracy_source']}; "
        f"p99 {p99(choice):.2f} ms <= {cfg.budget_ms:g} ms)"
        + (f"; next larger: {larger['model']} ({_latency_words(larger)})" if larger else "")
        + f"; report: {cfg.folder / 'choose.md'}")
    log(result["deploy_command"])
    return result


def _latency_words(row: dict) -> str:
    return f"p99 {p99(row):.2f} ms" if p99(row) is not None else row["status"]

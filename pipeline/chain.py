"""Running the deploy chain: each stage (pipeline.stages) after what it needs, at most once per run, through the run
folder, which skips a stage whose key is unchanged and whose files are intact.

A stage's key is what the stage module says it reads (its config fields, its inputs' digests) plus the digest of the
source it runs: its module and every module of this project it imports (pipeline.sources), the run's shared
surroundings (pipeline.stages.context) and, for the stages that call it, the target's module. So a new recipe redoes
what the old one made, and a reworded report redoes only the report and the bundle that carries its words.

Under torchrun (WORLD_SIZE > 1) rank 0 runs the chain and the other ranks join QAT's training only.
"""
from __future__ import annotations

from pathlib import Path

from pipeline import sources, stages
from pipeline.config import DeployConfig
from pipeline.runfolder import Stage
from pipeline.stages.context import Context

EDGE = Path(__file__).resolve().parent.parent / "edge"
# the bundle carries all of edge/: its key follows every module there, and the report and bundle writers
BUNDLE_SOURCES = ("pipeline.stages.report", "pipeline.ship.bundle", "pipeline.ship.report",
                  *sorted(".".join(p.relative_to(EDGE.parent).with_suffix("").parts) for p in EDGE.rglob("*.py")))


def stage_sources(stage: str, target_module: str | None = None) -> tuple[str, ...]:
    """The modules stage `stage` starts from ("bundle": the bundle's), with the target's module where it calls it."""
    modules = BUNDLE_SOURCES if stage == "bundle" else (stages.STAGES[stage].module, "pipeline.stages.context")
    targeted = stage == "bundle" or stages.STAGES[stage].targeted
    return (*modules, *((target_module,) if targeted and target_module else ()))


def code_digest(stage: str, target=None) -> str:
    """The digest of the source stage `stage` runs (pipeline.sources), for its cache key."""
    return sources.digest(*stage_sources(stage, type(target).__module__ if target is not None else None))


class Chain:
    """One deploy run's stages: `stage(name)` runs it after what it needs (each at most once)."""

    def __init__(self, cfg: DeployConfig, log=print):
        self.ctx = Context(cfg, log)
        self._done: dict[str, Stage | dict] = {}

    def stage(self, name: str):
        if name not in self._done:
            module, entry = stages.module(name), stages.STAGES[name]
            inputs = {as_: self.stage(made_by) for as_, made_by in stages.needs(name, self.ctx.cfg.quant.mode).items()}
            if entry.cached:
                key = {"code": code_digest(name, self.ctx.target), **module.key(self.ctx, inputs)}
                self._done[name] = self.ctx.run.stage(name, key, lambda out: module.run(self.ctx, inputs, out))
            else:
                self._done[name] = module.run(self.ctx, inputs)
        return self._done[name]


def run_until(cfg: DeployConfig, stage: str, log=print):
    """Run the chain up to `stage` (earlier stages are reused from the run folder when unchanged); its result."""
    chain = Chain(cfg, log)
    ctx = chain.ctx
    if not ctx.world.main:
        from pipeline.stages import qat

        qat.follow(ctx, chain.stage("model"), chain.stage("calibration"))
        return None
    try:
        ctx.check_inputs(stage)
        return chain.stage(stage)
    finally:
        ctx.world.announce(False)  # no QAT training in this run: the other ranks stop waiting

"""Running the deploy chain: each stage (pipeline.stages) after what it needs, at most once per run, through the run
folder, which skips a stage whose key is unchanged and whose files are intact.

A stage's key is what the stage module says it reads (its config fields, its inputs' digests) plus the digest of the
source it runs: its module and every module of this project it imports (pipeline.sources), the run's shared
surroundings (pipeline.stages.context) and, for the stages that call it, the target's module. So a new recipe redoes
what the old one made, and a reworded report redoes only the report and the bundle that carries its words.

Under torchrun (WORLD_SIZE > 1) rank 0 runs the chain and the other ranks join QAT's training only.
"""
from __future__ import annotations

from pipeline import stages
from pipeline.config import DeployConfig
from pipeline.runfolder import Stage
from pipeline.stages.context import Context
from pipeline.stages.keys import code_digest


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

"""How the stages that run artifacts get their runners: int8 judged in the board's arithmetic (the board's CPU under
QEMU where this host can emulate it, else this host's, with unsaturated sums where only this host's fused kernels
would saturate), timed as this host's runtime runs it. Its own module: the stages that run no artifact (model,
calibration, the converters) do not take the runtimes' code into their source."""
from __future__ import annotations

import functools
from pathlib import Path

from pipeline import emulation


@functools.lru_cache(maxsize=None)
def _choose(board_isa: str, emulate: str) -> emulation.Arithmetic:
    return emulation.choose(board_isa, emulate)


def arithmetic(ctx) -> emulation.Arithmetic:
    """The int8 arithmetic that judges this run's artifacts (board.isa, board.emulate)."""
    return _choose(ctx.cfg.board.isa, ctx.cfg.board.emulate)


def runner(ctx, artifact: Path, purpose: str = "time"):
    """`artifact` in the target's runtime: judged in the board's arithmetic (purpose="judge") or as this host times it."""
    return ctx.target.runner(artifact, ctx.host_threads, ctx.cfg.precision, purpose=purpose, arithmetic=arithmetic(ctx))

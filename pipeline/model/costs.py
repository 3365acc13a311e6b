"""What a model costs, measured from the model at the resolution it runs at: parameters and MACs.

The stored published FLOPs (ModelSpec.published_gflops) are the papers' figures at the papers' resolution;
B2 runs here at 288, not 260, and Lite3/Lite4 at 300/380, not 280/300, so those figures undercount them.
MACs are counted by PyTorch's FlopCounterMode (convolutions and matrix products; FLOPs / 2) on a model on
the meta device: shapes only, no memory and no arithmetic, about half a second even for B7 at 600 px.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from pipeline.model.family import ModelSpec
from pipeline.model.load import build


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int  # multiply-accumulates for one image of image_size x image_size
    image_size: int

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


def count_macs(model: torch.nn.Module, image_size: int, device: str = "meta") -> int:
    """FlopCounterMode's FLOPs / 2 for one image (it counts a multiply-add as 2 FLOPs)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(torch.zeros(1, 3, image_size, image_size, device=device))
    return counter.get_total_flops() // 2


def cost(spec: ModelSpec, image_size: int | None = None) -> Cost:
    """Parameters and MACs of `spec` (1000 classes) at `image_size`, default the resolution it runs at."""
    return _cost(spec, image_size or spec.preprocess.image_size)


@functools.lru_cache(maxsize=None)  # counted once a process: `make models` and the tests ask for all of them
def _cost(spec: ModelSpec, image_size: int) -> Cost:
    with torch.device("meta"):
        model = build(spec, spec.num_classes)
    return Cost(sum(p.numel() for p in model.parameters()), count_macs(model, image_size), image_size)

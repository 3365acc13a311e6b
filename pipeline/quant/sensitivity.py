"""Per-layer int8 sensitivity: how far the model's output moves when one layer alone is int8.

Each Conv2d/Linear in turn gets int8 weights (symmetric, per output channel) and an int8 input
(asymmetric, per tensor, min/max over the calibration set), simulated with PyTorch's own fake
quantization while every other layer stays float. Sensitivity is the relative mean squared
error of the logits against the float model on calibration images: no labels needed, the same
measure on every target, and it ranks layers by what they alone cost, not by the error they
inherit from the layers before them (which a per-layer error table of a fully int8 model mixes in).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm import tqdm


def _fake_quant_weight(w: torch.Tensor) -> torch.Tensor:
    scale = (w.abs().amax(dim=tuple(range(1, w.dim()))) / 127).clamp_min(1e-12)
    return torch.fake_quantize_per_channel_affine(w, scale, torch.zeros_like(scale, dtype=torch.int32), 0, -127, 127)


def _fake_quant_input(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / 255, 1e-12)
    return torch.fake_quantize_per_tensor_affine(x, scale, int(round(-lo / scale)), 0, 255)


def _kind(m: nn.Module) -> str:
    if isinstance(m, nn.Linear):
        return "linear"
    if m.groups > 1 and m.groups == m.in_channels:
        return "depthwise conv"
    return f"conv {m.kernel_size[0]}x{m.kernel_size[1]}"


@torch.no_grad()
def layer_sensitivity(model: nn.Module, calibration: np.ndarray, images: int = 32, progress: bool = True) -> list[dict]:
    """One row per Conv2d/Linear, in graph order: name, kind, sensitivity, top-1 agreement with float."""
    model = model.eval()
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    ranges: dict[str, list[float]] = {}

    def record(name):
        def hook(_, inputs):
            x = inputs[0]
            lo, hi = float(x.min()), float(x.max())
            old = ranges.get(name, [lo, hi])
            ranges[name] = [min(old[0], lo), max(old[1], hi)]

        return hook

    handles = [m.register_forward_pre_hook(record(name)) for name, m in layers]
    for chunk in torch.split(torch.from_numpy(calibration), 16):
        model(chunk)
    for h in handles:
        h.remove()

    x = torch.from_numpy(calibration[:images])
    ref = model(x)
    ref_power = float((ref**2).mean()) or 1e-12
    rows = []
    for name, m in tqdm(layers, desc="layer sensitivity", leave=False, dynamic_ncols=True, disable=not progress):
        lo, hi = ranges[name]
        weight = m.weight.data
        handle = m.register_forward_pre_hook(lambda _, inputs, lo=lo, hi=hi: (_fake_quant_input(inputs[0], lo, hi),))
        m.weight.data = _fake_quant_weight(weight)
        try:
            out = model(x)
        finally:
            m.weight.data = weight
            handle.remove()
        rows.append({
            "layer": name,
            "kind": _kind(m),
            "sensitivity": float(((out - ref) ** 2).mean()) / ref_power,
            "top1_agreement": float((out.argmax(1) == ref.argmax(1)).float().mean()),
        })
    return rows

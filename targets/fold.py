"""Fold BatchNorm into the convolution before it, so exported graphs hold no BatchNormalization.

ONNX Runtime does not fuse Conv+BN around Q/DQ nodes (such a graph runs 2-3x slower than
fp32), and TensorRT wants the folded weights quantized, not the unfolded ones.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from edge.errors import UserError


def _after_bn(bn: nn.Module) -> nn.Module:
    """What must still run after the folded BN: timm's BatchNormAct2d also holds the activation."""
    rest = [m for m in (getattr(bn, "drop", None), getattr(bn, "act", None)) if m is not None]
    return nn.Sequential(*rest) if rest else nn.Identity()


def fold_batchnorm(model: nn.Module, check_input: torch.Tensor | None = None) -> nn.Module:
    """A copy of `model` (eval mode) with every Conv2d -> BatchNorm2d pair folded.

    Pairs are adjacent children of one module in registration order, which is how torchvision
    (Conv2dNormActivation) and timm (conv_pw/bn1, conv_dw/bn2 ...) both lay them out. The result
    is checked against the original on `check_input`.
    """
    folded = copy.deepcopy(model).eval()
    for parent in folded.modules():
        children = list(parent.named_children())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
            if (
                isinstance(conv, nn.Conv2d)  # timm's Conv2dSame too: folding keeps its class and padding
                and isinstance(bn, nn.BatchNorm2d)
                and bn.num_features == conv.out_channels
                and bn.track_running_stats
            ):
                setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(parent, bn_name, _after_bn(bn))
    if check_input is not None:
        with torch.no_grad():
            ref, out = model.eval()(check_input), folded(check_input)
        scale = ref.abs().max().clamp_min(1e-12)
        if ((ref - out).abs().max() / scale) > 1e-3:
            raise UserError("folding BatchNorm changed the model's outputs; this architecture needs a fold rule")
    return folded


def count_batchnorm(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())

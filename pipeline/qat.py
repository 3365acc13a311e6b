"""Quantization-aware training (QUANT=qat): NNCF fake quantization initialised by PTQ, then a few
epochs at a low learning rate, then the target's own export.

The model is BatchNorm-folded first (frozen statistics; the graph every target exports), and
quantized by `nncf.quantize` on the calibration set: that is the PTQ initialisation. It is then
fine-tuned with its quantizers in the graph, so weights and the quantizers' ranges both learn.
The loss is cross-entropy on the labels plus distillation from the float model (KL at T=1),
which keeps the int8 model close to the float one when the folder is small.

`torchrun --nproc_per_node=N -m pipeline deploy --set quant.mode=qat ...` fine-tunes as N ranks
of DistributedDataParallel (see pipeline/train.py's Dist); rank 0 alone writes.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
import shutil

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pipeline import PipelineError
from targets.base import nncf_dataset
from targets.fold import fold_batchnorm


class Ranks:
    """torchrun's ranks around one deploy: rank 0 runs the stages and, when it reaches QAT training,
    tells the others (a broadcast) whether to train beside it; a world of one needs no word."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.main = int(os.environ.get("RANK", "0")) == 0
        self._said = False
        if self.world > 1:
            from pipeline.train import Dist

            Dist()  # joins the process group

    def _broadcast(self, value: int) -> int:
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.int64)
        dist.broadcast(t, 0)
        return int(t.item())

    def announce(self, train: bool) -> None:
        if self.world > 1 and self.main and not self._said:
            self._said = True
            self._broadcast(int(train))

    def wait(self) -> bool:
        return bool(self._broadcast(0))


def check_toolchain(log=print) -> None:
    """NNCF builds a C++ extension for the quantizers' forward/backward on first use and, without a
    compiler, silently falls back to slow reference code. Build it now, or fail saying what is missing."""
    if not (shutil.which("c++") or shutil.which("g++")):
        raise PipelineError("QUANT=qat needs a C++ compiler to build NNCF's extension: apt install g++ (or build-essential)")
    try:
        import ninja
    except ImportError:
        raise PipelineError("QUANT=qat needs ninja to build NNCF's extension: pip install ninja (make setup installs it)") from None
    os.environ["PATH"] = f"{ninja.BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}"  # torch calls `ninja` by name
    from nncf.torch.quantization import extensions
    from nncf.torch.quantization.reference import ReferenceQuantizedFunctions

    loader = extensions.QuantizedFunctionsCUDA if torch.cuda.is_available() else extensions.QuantizedFunctionsCPU
    log("[qat] loading NNCF's C++ quantization extension (built on first use, then cached)")
    loader.get("Quantize_forward")
    if getattr(loader, "_loaded_namespace", None) is ReferenceQuantizedFunctions:
        raise PipelineError("NNCF could not build its C++ extension (its warning above says why); "
                            "install g++ and ninja, remove ~/.cache/torch_extensions/*/nncf and run again")


def prepare(model: nn.Module, calibration: np.ndarray, quant, preset: str | None,
            exclude: tuple[str, ...] = ()) -> tuple[nn.Module, nn.Module]:
    """(BatchNorm-folded float model, the same with NNCF quantizers initialised by PTQ on `calibration`).

    NNCF's PyTorch PTQ, the start QAT trains from; `exclude` names PyTorch modules left unquantized.
    """
    import nncf

    folded = fold_batchnorm(model, torch.from_numpy(calibration[:1]))
    kwargs = (dataclasses.replace(quant, preset=preset) if preset else quant).nncf_kwargs(nncf, len(calibration))
    kwargs["fast_bias_correction"] = True  # NNCF's PyTorch backend has no other; training then tunes the biases
    if exclude:  # NNCF's torch graph names 'blocks.0.0.conv_dw' as 'blocks/0/0/conv_dw/conv2d/0'
        kwargs["ignored_scope"] = nncf.IgnoredScope(
            patterns=[f"^{re.escape(layer.replace('.', '/'))}/(conv2d|linear)/\\d+$" for layer in exclude])
    dataset = nncf_dataset(nncf, calibration, torch.from_numpy)
    return folded, nncf.quantize(copy.deepcopy(folded), dataset, **kwargs)


def finetune(qmodel: nn.Module, teacher: nn.Module, samples, preprocess, quant, log=print) -> list[dict]:
    """Train `qmodel` in place on the labelled `samples`; returns one history row per epoch."""
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data.distributed import DistributedSampler

    from pipeline.train import Dist, FolderDataset

    world = Dist()
    if not world.main:
        log = lambda *_: None  # noqa: E731
    torch.manual_seed(quant.qat_seed)
    device = world.device()
    qmodel.to(device)
    teacher = teacher.to(device).eval()
    dataset = FolderDataset(samples, preprocess, train=True)
    sampler = DistributedSampler(dataset, world.world, world.rank, shuffle=True, seed=quant.qat_seed) if world.world > 1 else None
    loader = torch.utils.data.DataLoader(dataset, quant.qat_batch_size, shuffle=sampler is None, sampler=sampler, num_workers=0)
    steps = quant.qat_epochs * max(1, len(loader))
    opt = torch.optim.Adam([p for p in qmodel.parameters() if p.requires_grad], lr=quant.qat_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
    net = DistributedDataParallel(qmodel, device_ids=[device.index] if device.type == "cuda" else None) if world.world > 1 else qmodel
    history = []
    for epoch in range(quant.qat_epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        net.train()
        total = agree = n = 0.0
        for x, y in tqdm(loader, desc=f"QAT epoch {epoch + 1}/{quant.qat_epochs}", leave=False, dynamic_ncols=True, disable=not world.main):
            x, y = x.to(device), y.to(device)
            with torch.no_grad():
                target = teacher(x)
            out = net(x)
            loss = nn.functional.cross_entropy(out, y, ignore_index=-1) + nn.functional.kl_div(
                out.log_softmax(1), target.log_softmax(1), log_target=True, reduction="batchmean")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(y)
            agree += float((out.argmax(1) == target.argmax(1)).sum())
            n += len(y)
        total, agree, n = world.sum(total, agree, n)
        history.append({"epoch": epoch + 1, "loss": total / max(n, 1), "train_agreement_with_float": agree / max(n, 1),
                        "lr": sched.get_last_lr()[0], "processes": world.world})
        log(f"[qat] epoch {epoch + 1}/{quant.qat_epochs}: loss {total / max(n, 1):.4f}, "
            f"top-1 agreement with float on the training crops {agree / max(n, 1):.3f}")
    qmodel.cpu().eval()
    teacher.cpu()
    return history

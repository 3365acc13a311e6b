"""Quantization-aware training (QUANT=qat): NNCF fake quantization initialised by PTQ, then a few
epochs at a low learning rate, then the target's own export.

The model is BatchNorm-folded first (frozen statistics; the graph every target exports), and
quantized by `nncf.quantize` on the calibration set: that is the PTQ initialisation. It is then
fine-tuned with its quantizers in the graph, so weights and the quantizers' ranges both learn.
The loss is cross-entropy on the labels plus distillation from the float model (KL at T=1),
which keeps the int8 model close to the float one when the folder is small.

`torchrun --nproc_per_node=N -m pipeline deploy --set quant.mode=qat ...` fine-tunes as N ranks
of DistributedDataParallel (pipeline/train/loop.py's loop and Dist); rank 0 alone writes.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import re
import shutil

import numpy as np
import torch
from torch import nn

from edge.isa import saturates
from pipeline import PipelineError
from pipeline.train.loop import Dist, cosine, fit
from calibration.adapters import nncf_dataset
from targets.fold import fold_batchnorm


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


def prepare(model: nn.Module, calibration: np.ndarray, quant, preset: str | None, isa: str,
            exclude: tuple[str, ...] = ()) -> tuple[nn.Module, nn.Module]:
    """(BatchNorm-folded float model, the same with NNCF quantizers initialised by PTQ on `calibration`).

    NNCF's PyTorch PTQ, the start QAT trains from; `exclude` names PyTorch modules left unquantized.
    """
    import nncf

    folded = fold_batchnorm(model, torch.from_numpy(calibration[:1]))
    kwargs = (dataclasses.replace(quant, preset=preset) if preset else quant).nncf_kwargs(nncf, len(calibration), saturates(isa))
    kwargs["fast_bias_correction"] = True  # NNCF's PyTorch backend has no other; training then tunes the biases
    if exclude:  # NNCF's torch graph names 'blocks.0.0.conv_dw' as 'blocks/0/0/conv_dw/conv2d/0'
        kwargs["ignored_scope"] = nncf.IgnoredScope(
            patterns=[f"^{re.escape(layer.replace('.', '/'))}/(conv2d|linear)/\\d+$" for layer in exclude])
    dataset = nncf_dataset(nncf, calibration, torch.from_numpy)
    return folded, nncf.quantize(copy.deepcopy(folded), dataset, **kwargs)


class Unlabelled(torch.utils.data.Dataset):
    """Preprocessed images with no labels (label -1), flipped at random: QAT by distillation alone."""

    def __init__(self, images: np.ndarray, seed: int = 0):
        self.images, self.rng = images, np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        x = self.images[i]
        if self.rng.random() < 0.5:
            x = x[:, :, ::-1]
        return torch.from_numpy(np.ascontiguousarray(x)), -1


def finetune(qmodel: nn.Module, teacher: nn.Module, dataset, quant, log=print) -> list[dict]:
    """Train `qmodel` in place on `dataset` ((image, label) pairs; label -1: distillation alone);
    returns one history row per epoch."""
    world = Dist()
    if not world.main:
        log = lambda *_: None  # noqa: E731
    torch.manual_seed(quant.qat_seed)
    device = world.device()
    qmodel.to(device)
    teacher = teacher.to(device).eval()
    loader = world.loader(dataset, quant.qat_batch_size, shuffle=True,
                          seed=quant.qat_seed, num_workers=0)
    opt = torch.optim.Adam([p for p in qmodel.parameters() if p.requires_grad], lr=quant.qat_lr)
    sched = cosine(opt, quant.qat_epochs * max(1, len(loader)))  # no warm-up: PTQ's initialisation is already close

    def distil(net, x, y):
        with torch.no_grad():
            target = teacher(x)
        out = net(x)
        loss = nn.functional.kl_div(out.log_softmax(1), target.log_softmax(1), log_target=True, reduction="batchmean")
        if (y >= 0).any():  # cross-entropy where there are labels (over none it is NaN)
            loss = loss + nn.functional.cross_entropy(out, y, ignore_index=-1)
        return loss, {"loss": float(loss.detach()) * len(y),
                      "train_agreement_with_float": float((out.argmax(1) == target.argmax(1)).sum())}

    def end_epoch(history: list[dict]) -> None:
        h = history[-1]
        log(f"[qat] epoch {h['epoch']}/{quant.qat_epochs}: loss {h['loss']:.4f}, "
            f"top-1 agreement with float on the training crops {h['train_agreement_with_float']:.3f}")

    history = fit(world.ddp(qmodel), loader, distil, opt, sched, world, epochs=quant.qat_epochs, desc="QAT epoch",
                  end_epoch=end_epoch)
    qmodel.cpu().eval()
    teacher.cpu()
    return history

"""The one training loop (float fine-tuning in pipeline/train/command.py, QAT in pipeline/quant/qat.py), its
cosine learning-rate schedule, and torchrun's world both run in.

Under `torchrun --nproc_per_node=N` every rank runs the same loop as one process of
DistributedDataParallel (gloo on CPUs, NCCL on GPUs); per-epoch sums are added up over the ranks,
so every rank's history rows hold the same numbers.
"""
from __future__ import annotations

import os
from typing import Callable

import torch
from torch import nn
from tqdm import tqdm


class Dist:
    """torchrun's world (RANK/WORLD_SIZE/LOCAL_RANK in the environment), or a world of one.

    Around one deploy, rank 0 runs the stages and, when it reaches QAT training, tells the others
    (`announce`, a broadcast they `wait` for) whether to train beside it; a world of one needs no word.
    """

    def __init__(self):
        import torch.distributed as dist

        self.dist = dist
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self._said = False
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self) -> torch.device:
        if torch.cuda.is_available():
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def sum(self, *values: float) -> list[float]:
        """Values added up over all ranks (every rank gets the totals)."""
        t = torch.tensor(values, dtype=torch.float64)
        if self.world > 1:
            self.dist.all_reduce(t)
        return t.tolist()

    def loader(self, dataset, batch_size: int, shuffle: bool, seed: int = 0, **kwargs) -> torch.utils.data.DataLoader:
        """A DataLoader over this rank's share of `dataset` (a DistributedSampler when there are several)."""
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(dataset, self.world, self.rank, shuffle=shuffle, seed=seed) if self.world > 1 else None
        return torch.utils.data.DataLoader(dataset, batch_size, shuffle=shuffle and sampler is None, sampler=sampler, **kwargs)

    def ddp(self, model: nn.Module) -> nn.Module:
        """`model` wrapped to average its gradients over the ranks; itself in a world of one."""
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def barrier(self) -> None:
        if self.world > 1:
            self.dist.barrier()

    def close(self) -> None:
        if self.world > 1 and self.dist.is_initialized():
            self.dist.destroy_process_group()

    def _broadcast(self, value: int) -> int:
        t = torch.tensor([value], dtype=torch.int64)
        self.dist.broadcast(t, 0)
        return int(t.item())

    def announce(self, train: bool) -> None:
        """Rank 0: tell the other ranks, once, whether there is QAT training to join."""
        if self.world > 1 and self.main and not self._said:
            self._said = True
            self._broadcast(int(train))

    def wait(self) -> bool:
        """Any other rank: rank 0's word from `announce`."""
        return bool(self._broadcast(0))


def cosine(opt: torch.optim.Optimizer, steps: int, warmup: int = 0):
    """The learning rate over `steps` updates: linear warm-up over the first `warmup`, then a cosine
    from the optimizer's rate down to zero at the last update.

    timm's scheduler is a function of the update count, which `fit` passes after every update: a
    resumed run continues on the curve of its current settings, and checkpoints need no scheduler state.
    """
    from timm.scheduler import CosineLRScheduler

    base = opt.param_groups[0]["lr"]
    return CosineLRScheduler(opt, t_initial=max(1, steps - warmup), lr_min=0.0, warmup_t=warmup,
                             warmup_lr_init=base / warmup if warmup else 0.0, warmup_prefix=True, t_in_epochs=False)


LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], "tuple[torch.Tensor, dict[str, float]]"]


def fit(net: nn.Module, loader, loss_fn: LossFn, opt: torch.optim.Optimizer, sched, world: Dist, *, epochs: int,
        history: list[dict] | None = None, amp: bool = False, desc: str = "epoch",
        end_epoch: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Train `net` for `epochs` epochs over `loader` and return the history, one row per epoch.

    `loss_fn(net, x, y)` gives (loss, {name: its sum over the batch}); a row holds the epoch, each
    name's mean over the epoch's images on all ranks, the learning rate after it and the number of
    processes. `history` holds the rows of epochs already run: a resumed run continues after them.
    `end_epoch(history)` runs on every rank once a row is added (validation, logs, checkpoints).
    `amp`: mixed precision with a gradient scaler (CUDA only).
    """
    history = [] if history is None else history
    start = history[-1]["epoch"] if history else 0
    per_epoch = max(1, len(loader))
    sched.step_update(start * per_epoch)  # the rate for the first update, resumed or not
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    for epoch in range(start, epochs):
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)  # DistributedSampler: a different shuffle every epoch
        n, sums = _epoch(net, loader, loss_fn, opt, sched, scaler, world, epoch * per_epoch, f"{desc} {epoch + 1}/{epochs}")
        history.append({"epoch": epoch + 1, **{k: v / max(n, 1) for k, v in sums.items()},
                        "lr": opt.param_groups[0]["lr"], "processes": world.world})
        if end_epoch is not None:
            end_epoch(history)
    return history


def _epoch(net, loader, loss_fn: LossFn, opt, sched, scaler, world: Dist, updates: int, desc: str) -> tuple[float, dict]:
    """One pass over `loader`: (images on all ranks, {name: sum on all ranks})."""
    device = next(net.parameters()).device
    net.train()
    sums: dict[str, float] = {}
    n = 0
    for x, y in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=not world.main):
        x, y = x.to(device), y.to(device)
        with torch.autocast(device.type, enabled=scaler.is_enabled()):
            loss, batch = loss_fn(net, x, y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        updates += 1
        sched.step_update(updates)
        for k, v in batch.items():
            sums[k] = sums.get(k, 0.0) + v
        n += len(y)
    n, *totals = world.sum(n, *sums.values())  # every rank has as many batches, so the same names
    return n, dict(zip(sums, totals))

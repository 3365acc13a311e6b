"""Fine-tune (or train from scratch) an EfficientNet on a labelled folder: the float model deploy starts from.

`torchrun --nproc_per_node=N [--nnodes ...] -m pipeline train ...` runs the same code as N ranks of
DistributedDataParallel (gloo on CPUs, NCCL on GPUs): distributed samplers, metrics summed over
ranks, rank 0 alone writing checkpoints and logs.

Transfer learning puts a new head on the folder's classes (optionally freezing the backbone),
trains with AdamW or SGD under a cosine schedule, evaluates with the model table's own
preprocessing (the one deploy uses), checkpoints every epoch (resumable) and keeps the best
checkpoint by validation accuracy as `best.pt`, a checkpoint `make deploy WEIGHTS=` reads.
"""
from __future__ import annotations

import json
import math
import os
import random
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from edge.dataset import ClassTable, Sample, labelled_samples
from edge.preprocess import INTERPOLATIONS, Preprocess, read_image
from pipeline import PipelineError
from pipeline.model.family import get_spec
from pipeline.model.load import classifier, load, save_checkpoint
from edge.files import write_atomic
from pipeline.config import TrainConfig  # noqa: F401  (the config of `train`, beside deploy's)
from pipeline.train.loop import Dist, cosine, fit


def _folder_classes(folder: str) -> list[str]:
    root = Path(folder)
    if not root.is_dir():
        raise PipelineError(f"DATA folder {root} does not exist; pass DATA=path/to/labelled/images")
    names = sorted(d.name for d in root.iterdir() if d.is_dir())
    if len(names) < 2:
        raise PipelineError(f"DATA folder {root} needs at least two class subfolders to train on")
    return names


class FolderDataset(torch.utils.data.Dataset):
    """Images decoded with OpenCV; training adds random-resized-crop and flip, evaluation is deploy's preprocessing."""

    def __init__(self, samples: list[Sample], pre: Preprocess, train: bool):
        self.samples, self.pre, self.train = samples, pre, train
        self.mean = np.asarray(pre.mean, np.float32)
        self.std = np.asarray(pre.std, np.float32)

    def __len__(self) -> int:
        return len(self.samples)

    def _augment(self, bgr: np.ndarray) -> np.ndarray:
        h, w = bgr.shape[:2]
        for _ in range(10):  # RandomResizedCrop(scale=(0.08, 1), ratio=(3/4, 4/3)), as torchvision does
            area = h * w * random.uniform(0.08, 1.0)
            ratio = math.exp(random.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
            if 0 < cw <= w and 0 < ch <= h:
                x, y = random.randint(0, w - cw), random.randint(0, h - ch)
                bgr = bgr[y : y + ch, x : x + cw]
                break
        size = self.pre.image_size
        bgr = cv2.resize(bgr, (size, size), interpolation=INTERPOLATIONS[self.pre.interpolation])
        if random.random() < 0.5:
            bgr = bgr[:, ::-1]
        rgb = bgr[:, :, ::-1].astype(np.float32) / 255.0
        return np.ascontiguousarray(((rgb - self.mean) / self.std).transpose(2, 0, 1))

    def __getitem__(self, i: int):
        sample = self.samples[i]
        img = read_image(sample.path)
        if img is None:  # corrupt: a blank image with label -1, ignored by the loss and the metric
            size = self.pre.image_size
            return torch.zeros(3, size, size), -1
        x = self._augment(img) if self.train else self.pre(img)
        return torch.from_numpy(x), sample.label


def _split(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """A stratified hold-out: `fraction` of every class goes to validation."""
    rng = random.Random(seed)
    train, val = [], []
    for label in sorted({s.label for s in samples}):
        group = [s for s in samples if s.label == label]
        rng.shuffle(group)
        k = max(1, int(round(len(group) * fraction))) if len(group) > 1 else 0
        val += group[:k]
        train += group[k:]
    return train, val


def _model(cfg: TrainConfig, classes: list[str]) -> nn.Module:
    """The starting model with a head for `classes` (kept only when it already predicts exactly those)."""
    loaded = load(get_spec(cfg.model), cfg.weights)
    model = loaded.model
    if list(loaded.labels) != list(classes):
        if hasattr(model, "reset_classifier"):  # timm
            model.reset_classifier(len(classes))
        else:  # torchvision
            model.classifier[-1] = nn.Linear(classifier(model).in_features, len(classes))
    if cfg.freeze_backbone:
        for p in model.parameters():
            p.requires_grad = False
        for p in classifier(model).parameters():
            p.requires_grad = True
    return model


@torch.no_grad()
def evaluate(model: nn.Module, loader, device, world: Dist | None = None) -> float:
    model.eval()
    correct = total = 0
    for x, y in loader:
        keep = y >= 0
        if keep.any():
            pred = model(x[keep].to(device)).argmax(1).cpu()
            correct += int((pred == y[keep]).sum())
            total += int(keep.sum())
    if world is not None:
        correct, total = world.sum(correct, total)
    return correct / total if total else 0.0


def train(cfg: TrainConfig, log=print) -> dict:
    """Single process, or one rank of `torchrun --nproc_per_node=N` (DDP; rank 0 alone writes and logs)."""
    world = Dist()
    try:
        return _train(cfg, world, log if world.main else (lambda *_: None))
    finally:
        world.close()


def _train(cfg: TrainConfig, world: Dist, log) -> dict:
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed + world.rank)  # each rank augments differently
    classes, train_s, val_s = _samples(cfg)
    device = world.device()
    train_loader, val_loader = _loaders(cfg, world, train_s, val_s, device)
    model = _model(cfg, classes).to(device)
    opt = _optimizer(cfg, model)
    steps = cfg.epochs * max(1, len(train_loader))
    sched = cosine(opt, steps, warmup=max(1, steps // 10))
    run = cfg.run_dir
    if world.main:
        run.mkdir(parents=True, exist_ok=True)
    world.barrier()
    history = []
    if cfg.resume and (run / "last.pt").exists():
        state = torch.load(run / "last.pt", map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])  # the schedule follows from the update count (see training.cosine)
        history = state["history"]
        log(f"[train] resuming after epoch {state['epoch'] + 1} of {cfg.epochs}")

    end_epoch = _end_epoch(cfg, classes, model, opt, val_loader, world, log)
    fit(world.ddp(model), train_loader, _cross_entropy, opt, sched, world, epochs=cfg.epochs, history=history,
        amp=device.type == "cuda", end_epoch=end_epoch)  # mixed precision on GPU only
    best = max((h["val_top1"] for h in history), default=-1.0)
    summary = {"best": str(run / "best.pt"), "best_val_top1": best, "classes": classes, "epochs": len(history),
               "train_images": len(train_s), "val_images": len(val_s)}
    if world.main:
        _plot(history, run / "training.png")
        write_atomic(run / "train.json", json.dumps(summary, indent=2))
    log(f"[train] best val top-1 {best:.3f}: make deploy MODEL={cfg.model} WEIGHTS={run / 'best.pt'} DATA=...")
    return summary


def _samples(cfg: TrainConfig) -> tuple[list[str], list[Sample], list[Sample]]:
    """(class names, training samples, validation samples): VAL's folder, or a stratified hold-out of DATA."""
    classes = _folder_classes(cfg.data)
    table = ClassTable.plain(classes)
    samples = labelled_samples(cfg.data, table)
    train_s, val_s = (samples, labelled_samples(cfg.val, table)) if cfg.val else _split(samples, cfg.val_split, cfg.seed)
    if not val_s:
        raise PipelineError("no validation images: pass VAL=folder or put at least 2 images in every class")
    return classes, train_s, val_s


def _loaders(cfg: TrainConfig, world: Dist, train_s: list[Sample], val_s: list[Sample], device: torch.device):
    """(training loader, validation loader), each over this rank's share; validation uses deploy's preprocessing."""
    spec = get_spec(cfg.model)
    pre = spec.preprocess.at_size(cfg.image_size) if cfg.image_size else spec.preprocess
    # Loader processes only where a GPU waits for data; on a CPU the cores are busy training anyway.
    # They are spawned, not forked: a fork of a process holding OpenMP/runtime threads can crash.
    loader_args = {"num_workers": min(4, os.cpu_count() or 1), "multiprocessing_context": "spawn",
                   "persistent_workers": True} if device.type == "cuda" else {"num_workers": 0}
    per_rank = -(-len(train_s) // world.world)
    train = world.loader(FolderDataset(train_s, pre, True), cfg.batch_size, shuffle=True, seed=cfg.seed,
                         drop_last=per_rank > cfg.batch_size, **loader_args)
    val = world.loader(FolderDataset(val_s, pre, False), cfg.batch_size, shuffle=False, **loader_args)
    return train, val


def _optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=True)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _cross_entropy(net: nn.Module, x: torch.Tensor, y: torch.Tensor):
    loss = nn.functional.cross_entropy(net(x), y, ignore_index=-1)  # -1: a corrupt image (see FolderDataset)
    return loss, {"train_loss": float(loss.detach()) * len(y)}


def _end_epoch(cfg: TrainConfig, classes: list[str], model: nn.Module, opt, val_loader, world: Dist, log):
    """After every epoch: validation top-1 into the row, the log line, and rank 0's files:
    best.pt (what deploy reads), last.pt (what --resume continues from) and history.json."""
    run, spec, device = cfg.run_dir, get_spec(cfg.model), world.device()

    def end(history: list[dict]) -> None:
        row = history[-1]
        row["val_top1"] = acc = evaluate(model, val_loader, device, world)
        epoch = row["epoch"]
        log(f"[train] epoch {epoch}/{cfg.epochs}: loss {row['train_loss']:.4f}, val top-1 {acc:.3f}")
        best = max(h["val_top1"] for h in history)
        if world.main:
            if acc == best:  # on a tie with an earlier epoch the later, longer-trained one wins
                tmp = run / ".best.pt.tmp"
                save_checkpoint(tmp, spec, model, classes, epoch=epoch, val_top1=acc)
                os.replace(tmp, run / "best.pt")
            tmp = run / ".last.pt.tmp"
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch - 1, "best": best,
                        "history": history, "config": asdict(cfg)}, tmp)
            os.replace(tmp, run / "last.pt")
            write_atomic(run / "history.json", json.dumps(history, indent=2))
        world.barrier()

    return end


def _plot(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    ax2.plot(epochs, [100 * h["val_top1"] for h in history], "s-", color="#2a7", label="val top-1 %")
    ax2.set_ylabel("val top-1 %")
    fig.legend(loc="upper center", ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)

"""The host's view of labelled folders: the model's class table, and cheap content keys for caching."""
from __future__ import annotations

import hashlib
from pathlib import Path

from edge.dataset import IMAGE_EXTENSIONS, ClassTable, Sample, check_folder, list_images  # noqa: F401
from edge.dataset import labelled_samples as _labelled_samples
from pipeline import PipelineError
from pipeline.model.labels import imagenet_aliases, imagenet_wnids, is_imagenet

# Sub-folders that make a folder a dataset root rather than a labelled folder; DATA validates on a held-out one.
SPLITS = ("train", "training", "val", "valid", "validation", "test")
HELD_OUT = ("val", "valid", "validation", "test")


def class_table(labels: list[str]) -> ClassTable:
    """ImageNet models get WordNet ids and synonyms; other models their own label names."""
    if is_imagenet(labels):
        return ClassTable(list(labels), imagenet_aliases(), imagenet_wnids())
    return ClassTable.plain(labels)


def labelled_samples(folder: str | Path, labels: list[str], what: str = "DATA", model: str | None = None) -> list[Sample]:
    """Every image under `folder` labelled by its class folder; a layout mistake is one line naming its fix."""
    folder = check_folder(folder, what)
    table = class_table(labels)
    check_layout(folder, table, what, model)
    return _labelled_samples(folder, table)


def check_layout(folder: Path, table: ClassTable, what: str = "DATA", model: str | None = None) -> None:
    """The three layouts a first run gets wrong (a dataset root, a flat folder, class folders the model does not
    know), each one line with its fix; edge.dataset's own errors say what is wrong, not what to do instead."""
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir() and list_images(d))
    if not class_dirs:
        raise PipelineError(f"{what}={folder} holds images but no class subfolders: {what} needs one subfolder per class "
                            f"({what}/<class>/<image>); a flat folder of unlabelled images can serve as CALIB={folder}")
    unmapped = [d for d in class_dirs if table.index_of(d.name) is None]
    if unmapped and all(d.name.lower() in SPLITS for d in unmapped):
        raise PipelineError(_dataset_root(folder, unmapped, what))
    # edge.dataset maps unknown names in sorted order when their count is the model's (a model whose names it lacks)
    if unmapped and not len(unmapped) == len(class_dirs) == len(table.names):
        raise PipelineError(_unknown_classes(folder, [d.name for d in unmapped], len(class_dirs), table, what, model))


def _dataset_root(folder: Path, splits: list[Path], what: str) -> str:
    """DATA=root holding train/ and val/: it is refused, not guessed, since which split validates is the user's call."""
    by_name = {d.name.lower(): d for d in splits}
    held_out = next((by_name[n] for n in HELD_OUT if n in by_name), None)
    train = by_name.get("train") or by_name.get("training")
    if what == "TRAIN_DATA":
        fix = f"TRAIN_DATA={train or splits[0]}" + (f" and DATA={held_out}" if held_out else "")
    else:
        fix = f"DATA={held_out or splits[0]}" + (f" TRAIN_DATA={train}" if train else "")
    inside = ", ".join(f"{d.name}/" for d in splits)
    return f"{what}={folder} is a dataset root ({inside} inside), not a folder of class subfolders: pass {fix}"


def _unknown_classes(folder: Path, unmapped: list[str], total: int, table: ClassTable, what: str, model: str | None) -> str:
    n, name = len(table.names), model or "<model>"
    known = ("ImageNet's 1000 classes, by index, name or WordNet id" if table.wnids else
             f"its {n} classes, by index 0-{n - 1} or name: {', '.join(table.names[:5])}{', ...' if n > 5 else ''}")
    line = f"{len(unmapped)} of {total} class folders in {what}={folder} match no class of {f'MODEL={model}' if model else 'the model'} ({known}): {unmapped[:5]}"
    if len(unmapped) < total:  # the others map: a typo, or a class this model does not have
        return line + "; rename or remove them"
    return (line + f"; to fine-tune on these classes: make train MODEL={name} DATA=<labelled training images>, then "
            f"WEIGHTS=runs/{name}-train/best.pt (or pass the WEIGHTS= trained on them)")


def holdout_split(samples: list[Sample]) -> tuple[list[Sample], list[Sample]]:
    """(train, validation): half of each class each, chosen by a hash of the file name (stable across runs)."""
    by_label: dict[int, list[Sample]] = {}
    for s in samples:
        by_label.setdefault(s.label, []).append(s)
    train = set()
    for group in by_label.values():
        ordered = sorted(group, key=lambda s: hashlib.sha256(str(s.path).encode()).hexdigest())
        train.update(ordered[0::2])
    return [s for s in samples if s in train], [s for s in samples if s not in train]


def fingerprint(paths: list[Path]) -> str:
    """A cheap content key for a set of files: names, sizes and modification times."""
    h = hashlib.sha256()
    for p in sorted(paths):
        st = p.stat()
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]

"""The host's view of labelled folders: the model's class table, and cheap content keys for caching."""
from __future__ import annotations

import hashlib
from pathlib import Path

from edge.dataset import IMAGE_EXTENSIONS, ClassTable, Sample, check_folder, list_images  # noqa: F401
from edge.dataset import labelled_samples as _labelled_samples
from pipeline.labels import imagenet_aliases, imagenet_wnids, is_imagenet


def class_table(labels: list[str]) -> ClassTable:
    """ImageNet models get WordNet ids and synonyms; other models their own label names."""
    if is_imagenet(labels):
        return ClassTable(list(labels), imagenet_aliases(), imagenet_wnids())
    return ClassTable.plain(labels)


def labelled_samples(folder: str | Path, labels: list[str]) -> list[Sample]:
    return _labelled_samples(folder, class_table(labels))


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

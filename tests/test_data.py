"""Class folders named by index, name or WordNet id map onto the model's outputs."""
from __future__ import annotations

import pytest

from conftest import write_folder
from pipeline import PipelineError
from pipeline.data.folders import labelled_samples
from pipeline.model.labels import imagenet_names


def _labels_by_folder(samples):
    return {s.path.parent.name: s.label for s in samples}


def test_imagenet_folders_by_wnid_index_and_name(tmp_path):
    # A 1000-class model scored on a folder holding only some of its classes.
    write_folder(tmp_path, per_class=1, names=["n02123045", "281", "tiger cat", "Egyptian_cat"])
    got = _labels_by_folder(labelled_samples(tmp_path, imagenet_names()))
    assert got == {"n02123045": 281, "281": 281, "tiger cat": 282, "Egyptian_cat": 285}


def test_imagenet_synonyms_match(tmp_path):
    write_folder(tmp_path, per_class=1, names=["tabby cat", "great white shark", "n01440764", "goldfish"])
    got = _labels_by_folder(labelled_samples(tmp_path, imagenet_names()))
    assert got == {"tabby cat": 281, "great white shark": 2, "n01440764": 0, "goldfish": 1}


def test_custom_labels_map_by_name_in_any_order(tmp_path):
    write_folder(tmp_path, per_class=2, names=["yellow", "blue", "red", "green"])
    got = _labels_by_folder(labelled_samples(tmp_path, ["red", "green", "blue", "yellow"]))
    assert got == {"red": 0, "green": 1, "blue": 2, "yellow": 3}


def test_unknown_names_fall_back_to_sorted_order_only_when_counts_match(tmp_path):
    write_folder(tmp_path / "a", per_class=1, names=["d", "c", "b", "a"])
    got = _labels_by_folder(labelled_samples(tmp_path / "a", [f"class_{i}" for i in range(4)]))
    assert got == {"a": 0, "b": 1, "c": 2, "d": 3}
    with pytest.raises(PipelineError, match="match no class of the model"):
        labelled_samples(tmp_path / "a", [f"class_{i}" for i in range(5)])


def test_unmapped_folder_is_named_in_the_error(tmp_path):
    write_folder(tmp_path, per_class=1, names=["n02123045", "not_a_class", "1", "2"])
    with pytest.raises(PipelineError, match="not_a_class"):
        labelled_samples(tmp_path, imagenet_names())


def test_missing_empty_and_flat_folders(tmp_path):
    with pytest.raises(PipelineError, match="does not exist"):
        labelled_samples(tmp_path / "nope", ["a"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PipelineError, match="holds no images"):
        labelled_samples(tmp_path / "empty", ["a"])
    flat = write_folder(tmp_path / "flat", per_class=1)
    for p in list(flat.rglob("*.png")):
        p.rename(flat / p.name)
    with pytest.raises(PipelineError, match="no class subfolders"):
        labelled_samples(flat, ["a"])


def test_a_dataset_root_names_its_splits(tmp_path):
    for split in ("train", "validation"):
        write_folder(tmp_path / "root" / split, per_class=1)
    root = tmp_path / "root"
    with pytest.raises(PipelineError) as e:
        labelled_samples(root, ["red", "green", "blue", "yellow"])
    assert str(e.value) == (f"DATA={root} is a dataset root (train/, validation/ inside), not a folder of class subfolders: "
                            f"pass DATA={root / 'validation'} TRAIN_DATA={root / 'train'}")
    # two splits and a 2-class model with unnamed classes: not mapped in sorted order as two classes
    with pytest.raises(PipelineError, match="is a dataset root"):
        labelled_samples(root, ["class_0", "class_1"])


def test_some_unknown_folders_ask_for_a_rename(tmp_path):
    write_folder(tmp_path, per_class=1, names=["red", "green", "blu", "yellow"])
    with pytest.raises(PipelineError) as e:
        labelled_samples(tmp_path, ["red", "green", "blue", "yellow"], model="b0")
    assert "1 of 4 class folders" in str(e.value) and "['blu']" in str(e.value) and "rename or remove them" in str(e.value)
    assert "by index 0-3 or name: red, green, blue, yellow" in str(e.value)

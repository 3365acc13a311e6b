"""Fine-tuning on a labelled folder, checkpoints, resume, and deploying the result."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import write_folder
from pipeline.cli import main
from pipeline.model.family import get_spec
from pipeline.model.load import build, load, save_checkpoint


def test_finetune_resume_and_deploy(tmp_path, colour_data):
    data = write_folder(tmp_path / "train", per_class=10, seed=3)
    out = tmp_path / "run"
    common = ["train", "--model", "lite0", "--data", str(data), "--image-size", "64", "--batch-size", "8",
              "--lr", "3e-3", "--out", str(out)]
    assert main([*common, "--epochs", "1"]) == 0  # pretrained lite0, new 4-class head
    first = json.loads((out / "history.json").read_text())
    assert len(first) == 1 and (out / "best.pt").exists() and (out / "last.pt").exists()

    assert main([*common, "--epochs", "3", "--resume"]) == 0  # picks up after epoch 1
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3] and history[0] == first[0]
    assert all(set(h) == {"epoch", "train_loss", "val_top1", "lr", "processes"} for h in history)
    # the resumed run follows the 3-epoch cosine, not the 1-epoch one it started on (which ended at 0)
    assert first[0]["lr"] == pytest.approx(0, abs=1e-12) and history[1]["lr"] > 1e-4 and history[2]["lr"] < 1e-12
    summary = json.loads((out / "train.json").read_text())
    assert summary["classes"] == ["blue", "green", "red", "yellow"] and summary["best_val_top1"] >= 0.75
    assert (out / "training.png").stat().st_size > 1000

    loaded = load(get_spec("lite0"), str(out / "best.pt"))
    assert loaded.labels == ["blue", "green", "red", "yellow"]
    ckpt = torch.load(out / "best.pt", weights_only=True)
    assert ckpt["val_top1"] == summary["best_val_top1"]

    # The fine-tuned float model is what deploy quantizes: its classes map onto the folder by name.
    run = tmp_path / "deploy"
    assert main(["deploy", "--model", "lite0", "--weights", str(out / "best.pt"), "--data", str(colour_data),
                 "--image-size", "64", "--calib-size", "16", "--out", str(run), "--set", "runs=3", "--set", "warmup=1",
                 "--max-drop", "5"]) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["accuracy"]["float"]["top1"] >= 0.75 and report["accuracy"]["top1_agreement"] >= 0.85


def test_the_loop_follows_a_cosine_to_zero_and_resumes_on_it():
    """pipeline.train.loop.fit with the schedule train uses: linear warm-up, cosine to zero over all updates."""
    from pipeline.train.loop import Dist, cosine, fit

    torch.manual_seed(0)
    x = torch.randn(40, 3)
    data = torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long())

    def run(history=None):
        model = torch.nn.Linear(3, 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        loader = torch.utils.data.DataLoader(data, batch_size=10, shuffle=True)
        sched = cosine(opt, 4 * len(loader), warmup=2)
        used = []

        def loss_fn(net, xb, yb):
            used.append(opt.param_groups[0]["lr"])
            loss = torch.nn.functional.cross_entropy(net(xb), yb)
            return loss, {"loss": float(loss.detach()) * len(yb)}

        return fit(model, loader, loss_fn, opt, sched, Dist(), epochs=4, history=history), used

    rows, lrs = run()
    assert len(lrs) == 16 and [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert all(set(r) == {"epoch", "loss", "lr", "processes"} and r["processes"] == 1 for r in rows)
    assert lrs[0] < lrs[1] < lrs[2] == pytest.approx(0.1)  # warm-up
    assert all(a > b for a, b in zip(lrs[2:], lrs[3:]))  # then down all the way
    assert lrs[2 + 7] == pytest.approx(0.05)  # half-way through the cosine: half the rate
    assert 0 < lrs[-1] < 0.01 and rows[-1]["lr"] == pytest.approx(0, abs=1e-12)
    resumed, lrs_resumed = run(history=rows[:2])  # a fresh optimizer and schedule, as after --resume
    assert [r["epoch"] for r in resumed] == [1, 2, 3, 4] and lrs_resumed == pytest.approx(lrs[8:])


def test_train_needs_a_labelled_folder(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.e2e  # ~31 s; the default run trains, checkpoints and resumes in one process above
def test_torchrun_two_processes_train_checkpoint_and_resume(tmp_path):
    """Two ranks of DistributedDataParallel on the CPU (gloo), through torchrun itself."""
    import subprocess
    import sys
    from pathlib import Path

    data = write_folder(tmp_path / "train", per_class=8, seed=4)
    out = tmp_path / "ddp"

    def torchrun(epochs: int, *extra: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "pipeline", "train",
               "--model", "lite0", "--weights", "random", "--data", str(data), "--image-size", "64", "--batch-size", "4",
               "--epochs", str(epochs), "--out", str(out), *extra]
        env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
        return subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parents[1], env=env, timeout=600)

    r = torchrun(1)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert r.stdout.count("[train] epoch 1/1") == 1  # rank 0 alone logs
    r = torchrun(2, "--resume")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "resuming after epoch 1" in r.stdout
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and all(h["processes"] == 2 for h in history)
    assert (out / "best.pt").exists() and not list(out.glob(".*.tmp"))
    assert load(get_spec("lite0"), str(out / "best.pt")).labels == ["blue", "green", "red", "yellow"]


@pytest.mark.e2e  # ~60 s on 2 busy cores; the default run has deploy's model stage on such a checkpoint below
def test_a_phi_model_trains_from_scratch_and_deploys(tmp_path, colour_data):
    """MODEL=phi-1 (B0 compound-scaled down, no pretrained weights): make train from scratch, then make deploy
    with the checkpoint it wrote, at 64 px."""
    data = write_folder(tmp_path / "train", per_class=8, seed=5)
    out = tmp_path / "train-run"
    assert main(["train", "--model", "phi-1", "--weights", "random", "--data", str(data), "--image-size", "64",
                 "--batch-size", "8", "--epochs", "2", "--lr", "3e-3", "--out", str(out)]) == 0
    assert torch.load(out / "best.pt", weights_only=True)["model"] == "phi-1"
    run = tmp_path / "deploy"
    assert main(["deploy", "--model", "phi-1", "--weights", str(out / "best.pt"), "--data", str(colour_data),
                 "--image-size", "64", "--calib-size", "16", "--out", str(run), "--set", "runs=3", "--set", "warmup=1",
                 "--max-drop", "100"]) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["model"] == "phi-1" and report["weights"] == f"file {out / 'best.pt'}"
    assert report["preprocess"]["image_size"] == 64 and report["float_parity"]["relative_diff"] < 1e-3


def test_deploy_takes_a_phi_checkpoint(tmp_path, colour_data):
    """What make train writes for a phi model (a checkpoint naming it) is what deploy's model stage loads (the
    conversions after it are those of any torchvision EfficientNet; the test above runs them)."""
    spec = get_spec("phi-2")
    torch.manual_seed(0)
    model = build(spec, 4).eval()
    save_checkpoint(tmp_path / "best.pt", spec, model, ["blue", "green", "red", "yellow"])
    run = tmp_path / "run"
    assert main(["model", "--model", "phi-2", "--weights", str(tmp_path / "best.pt"), "--data", str(colour_data),
                 "--image-size", "64", "--out", str(run)]) == 0
    loaded = load(spec, str(run / "model" / "model.pt"))
    assert loaded.labels == ["blue", "green", "red", "yellow"] and spec.preprocess.image_size == 168  # 224 · 1.15^-2 = 169.4
    assert torch.equal(loaded.model.features[0][0].weight, model.features[0][0].weight)


def test_deploying_an_untrained_phi_model_says_train_it_first(tmp_path, capsys):
    assert main(["deploy", "--model", "phi0.5", "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "train it first, make train MODEL=phi0.5 WEIGHTS=random" in err, err
    assert not (tmp_path / "run").exists()


def test_the_train_command_takes_its_options_from_the_config(capsys):
    """Every TrainConfig field is a `train` option with the config's own default: the CLI never retypes the config."""
    import dataclasses

    from pipeline.cli import main
    from pipeline.config import TrainConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(TrainConfig):
        assert "--" + f.name.replace("_", "-") in out, f.name
    assert "--epochs EPOCHS (default: 10)" in out and "--weight-decay WEIGHT_DECAY (default: 0.05)" in out

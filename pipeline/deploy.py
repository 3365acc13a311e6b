"""The deploy recipe, top to bottom: model -> calibration -> float artifact -> int8 artifact -> validation
-> report -> bundle.

Each step is a cached stage in the run folder (see runfolder.py); `run_until()` runs the chain up
to one named stage ("report" = all of it), so every stage can be run alone.
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import calibration
import targets
from edge import metrics
from edge.preprocess import Preprocess, read_images
from pipeline import PipelineError, emulation, sources
from pipeline import weights as hub_weights
from pipeline.config import DeployConfig
from pipeline.data import check_folder, fingerprint, holdout_split, labelled_samples, list_images
from pipeline.family import get_spec
from pipeline.labels import is_imagenet
from pipeline.models import fix_same_padding, labels_for, load, save_checkpoint
from pipeline.bundle import write_bundle, write_tarball
from pipeline.report import write_report
from pipeline.runfolder import RunFolder, Stage, sha256
from pipeline.stages import STAGES
from pipeline.sample_data import SAMPLE_PHOTOS, calibration_folder, sample_folder
from pipeline import validate as val

# The camera-input check compares two forms of the same artifact, which differ only in float rounding of the
# normalisation: a few hundred images show any real difference (a wrong constant moves every image).
CAMERA_CHECK_IMAGES = 256


def progress(iterable, **kw):
    return tqdm(iterable, unit="img", leave=False, dynamic_ncols=True, **kw)


@dataclass(frozen=True)
class TrainingSet:
    """What QUANT=qat trains on: a torch dataset, the files behind it and the folder they come from."""

    dataset: object
    files: list[str]
    source: str
    labelled: bool = True
    validated: int = 0  # how many of the files are also validation images (by content)


# The modules each stage starts from (pipeline.sources follows their imports): its cache key changes with them only.
STAGE_SOURCES = {
    "model": ("pipeline.models", "pipeline.family", "pipeline.weights"),
    "calibration": ("calibration.sets", "calibration.cache", "pipeline.data", "pipeline.sample_data", "edge.preprocess"),
    "float": ("pipeline.models",),
    "int8": ("pipeline.config",),
    "qat": ("pipeline.config", "pipeline.qat", "pipeline.training"),
    "auto": ("pipeline.config", "pipeline.accuracy_aware", "pipeline.sensitivity"),
    "validate": ("pipeline.validate", "pipeline.emulation", "pipeline.data", "calibration.sets", "edge.metrics"),
    "bundle": ("pipeline.bundle", "pipeline.report", *(f"edge.{p.stem}" for p in (Path(__file__).parent.parent / "edge").glob("*.py"))),
}


def code_digest(stage: str, target=None) -> str:
    """The source `stage` runs (and `target`'s module, for the stages that call it): a new version of a recipe
    redoes what the old one made, and a reworded report redoes only what carries its words."""
    return sources.digest(*STAGE_SOURCES[stage], *((type(target).__module__,) if target is not None else ()))


def _once(name: str):
    """Run a stage at most once per Deploy (later stages ask for earlier ones repeatedly)."""

    def wrap(method):
        def cached(self) -> Stage:
            if name not in self._done:
                self._done[name] = method(self)
            return self._done[name]

        return cached

    return wrap


class Deploy:
    """The state of one deploy run; each method is one stage."""

    def __init__(self, cfg: DeployConfig, log=print):
        from pipeline.training import Dist

        self.cfg = cfg
        self.world = Dist()
        self.log = log if self.world.main else (lambda *_: None)
        self.spec = get_spec(cfg.model)
        self.target = targets.get_target(cfg.target)
        self.data_dir, self.data_is_sample = self._data_folder()
        self._done: dict[str, Stage] = {}

    @functools.cached_property
    def run(self) -> RunFolder:
        """Made on first use, after check_inputs: a refused run leaves the run folder as it was."""
        return RunFolder(self.cfg.run_dir, self.log, identity={"model": self.spec.name, "target": self.cfg.target})

    # -- inputs -------------------------------------------------------------------------------
    def check_inputs(self, stage: str) -> None:
        """What the stages up to `stage` will read, checked before any model work (seconds to minutes) and before
        the run folder is touched: WEIGHTS against MODEL, the folders, DATA's and TRAIN_DATA's class folders."""
        cfg = self.cfg
        if cfg.calib and cfg.calib != calibration.RANDOM:
            check_folder(cfg.calib, "CALIB")
        if stage == "calibration":
            return  # needs no model and no labels
        labels = labels_for(self.spec, cfg.weights, cfg.num_classes)  # reads WEIGHTS' tensor shapes, builds nothing
        if cfg.weights is None:
            hub_weights.ensure(self.spec)  # a hub that cannot be reached is one line now, not after the run folder is made
        trains = stage == "qat" or (cfg.quant.mode == "qat" and stage in ("validate", "report"))
        if trains and cfg.quant.qat_data == "labelled":
            self._train_samples(labels)
        if stage in ("qat", "auto", "validate", "report"):
            if self.data_is_sample and not is_imagenet(labels):
                raise PipelineError(f"no DATA given, and the embedded sample is labelled with ImageNet classes, which this "
                                    f"{len(labels)}-class model does not have: pass DATA=<a folder with one subfolder per class>")
            labelled_samples(self.data_dir, labels, "DATA", self.spec.name)

    def _data_folder(self) -> tuple[Path, bool]:
        if self.cfg.data:
            return check_folder(self.cfg.data), False
        return sample_folder(Path("runs") / "_sample_data"), True

    @property
    def preprocess(self) -> Preprocess:
        pre = self.spec.preprocess
        return pre.at_size(self.cfg.image_size) if self.cfg.image_size else pre

    # -- stages -------------------------------------------------------------------------------
    @_once("model")
    def model(self) -> Stage:
        weights = self.cfg.weights
        weights_id = weights if weights in (None, "random") else sha256(Path(weights)) if Path(weights).is_file() else weights
        key = {"model": self.spec.name, "code": code_digest("model"), "weights": weights_id, "num_classes": self.cfg.num_classes,
               "seed": self.cfg.seed}

        def work(tmp: Path) -> dict:
            torch.manual_seed(self.cfg.seed)
            loaded = load(self.spec, weights, self.cfg.num_classes)
            save_checkpoint(tmp / "model.pt", self.spec, loaded.model, loaded.labels)
            return {"weights": loaded.weights, "num_classes": len(loaded.labels)}

        return self.run.stage("model", key, work)

    @_once("calibration")
    def calibration(self) -> Stage:
        source = self.cfg.calib or str(self.data_dir)
        if self.data_is_sample and not self.cfg.calib:
            source = str(calibration_folder(Path("runs") / "_sample_calibration"))
        folder_key = "random" if source == calibration.RANDOM else fingerprint(list_images(check_folder(source, "CALIB")))
        key = {"source": source, "code": code_digest("calibration"), "files": folder_key, "n": self.cfg.calib_size, "seed": self.cfg.seed, "preprocess": self.preprocess.to_dict()}

        def work(tmp: Path) -> dict:
            calib = calibration.build(source, self.cfg.calib_size, self.preprocess, self.cfg.seed, progress)
            np.save(tmp / "calibration.npy", calib.batch)
            (tmp / "files.json").write_text(json.dumps(calib.files))
            return {**calib.summary(), "skipped_files": calib.skipped}

        return self.run.stage("calibration", key, work)

    @_once("float")
    def float_artifact(self) -> Stage:
        model_stage = self.model()
        key = {"target": self.cfg.target, "code": code_digest("float", self.target), "model": model_stage.digest,
               "preprocess": self.preprocess.to_dict()}

        def work(tmp: Path) -> dict:
            model = self._torch_model(model_stage)
            example = torch.zeros(1, 3, self.preprocess.image_size, self.preprocess.image_size)
            path = self.target.convert_float(model, example, tmp / "model")
            return {"artifact": path.name}

        return self.run.stage("float", key, work)

    @_once("int8")
    def int8_artifact(self) -> Stage:
        model_stage, float_stage, calib_stage = self.model(), self.float_artifact(), self.calibration()
        key = {"target": self.cfg.target, "code": code_digest("int8", self.target), "float": float_stage.digest,
               "calibration": calib_stage.digest, "quant": self.cfg.ptq_settings()}

        def work(tmp: Path) -> dict:
            model = self._torch_model(model_stage)
            batch = np.load(calib_stage.path("calibration.npy"))
            self.log(f"[int8] post-training quantization with {len(batch)} calibration images from {calib_stage.result['source']}")
            path = self.target.quantize(model, float_stage.artifact, batch, self.cfg.quant, tmp / "model", isa=self.cfg.board.isa,
                                         settings=self.cfg.settings)
            return {"artifact": path.name, "ops": self.target.describe(path)}

        return self.run.stage("int8", key, work)

    @_once("qat")
    def qat(self) -> Stage:
        """QUANT=qat: NNCF quantization-aware training from the PTQ initialisation, exported like PTQ.

        Under torchrun, this rank (0) tells the others whether there is training to join (see follow_qat).
        """
        model_stage, calib_stage = self.model(), self.calibration()
        trains_on = calib_stage.digest if self.cfg.quant.qat_data == "calibration" else fingerprint(list_images(self._train_folder()))
        key = {"target": self.cfg.target, "code": code_digest("qat", self.target), "model": model_stage.digest, "calibration": calib_stage.digest,
               "train": trains_on, "quant": asdict(self.cfg.quant), "preprocess": self.preprocess.to_dict()}

        def work(tmp: Path) -> dict:
            self.world.announce(True)
            folded, qmodel, history, trained, calib = self._qat_train()
            example = torch.from_numpy(calib[:1])
            path = self.target.export_qat(qmodel, folded, example, calib, self.cfg.quant, tmp / "model", isa=self.cfg.board.isa)
            (tmp / "train_files.json").write_text(json.dumps(trained.files))
            return {"artifact": path.name, "ops": self.target.describe(path), "history": history,
                    "train_images": len(trained.files), "train_folder": trained.source, "train_split": self._splits_data,
                    "labels": trained.labelled, "validation_images_trained_on": trained.validated,
                    "trained_on_validation_data": trained.validated > 0}

        try:
            return self.run.stage("qat", key, work)
        finally:
            self.world.announce(False)  # cached, or failed before training: the other ranks stop waiting

    def _qat_train(self):
        from pipeline import qat

        qat.check_toolchain(self.log)
        model, labels = self._torch_model(self.model(), with_labels=True)
        trained = self._qat_training_set(labels)
        calib = np.load(self.calibration().path("calibration.npy"))
        how = "cross-entropy + distillation" if trained.labelled else "distillation from the float model alone, no labels"
        self.log(f"[qat] PTQ initialisation on {len(calib)} calibration images, then {self.cfg.quant.qat_epochs} epoch(s) "
                 f"at lr {self.cfg.quant.qat_lr:g} on {len(trained.files)} images from {trained.source} ({how})")
        folded, qmodel = qat.prepare(model, calib, self.cfg.quant, self.target.qat_preset, self.cfg.board.isa)
        history = qat.finetune(qmodel, folded, trained.dataset, self.cfg.quant, self.log)
        return folded, qmodel, history, trained, calib

    def _qat_training_set(self, labels: list[str]) -> TrainingSet:
        from pipeline import qat
        from pipeline.train import FolderDataset

        if self.cfg.quant.qat_data == "calibration":
            stage = self.calibration()  # never random: DeployConfig refuses that
            images, files = np.load(stage.path("calibration.npy")), self._calibration_files()
            dataset, source = qat.Unlabelled(images, self.cfg.quant.qat_seed), stage.result["source"]
        else:
            samples = self._train_samples(labels)
            if not samples:
                raise PipelineError(f"no labelled images in {self._train_folder()} for QAT; pass TRAIN_DATA=folder (one subfolder "
                                    "per class), or SET=quant.qat_data=calibration to distil on the calibration images without labels")
            dataset, source = FolderDataset(samples, self.preprocess, train=True), str(self._train_folder())
            files = [str(s.path) for s in samples]
        validated = [s.path for s in self._validation_samples(labels)]
        among = len(files) - len(val.rows_not_among(files, validated))  # by content: a copy in another folder counts
        return TrainingSet(dataset, files, source, labelled=self.cfg.quant.qat_data == "labelled", validated=among)

    def follow_qat(self) -> None:
        """A torchrun rank other than 0: wait for rank 0's word, then train beside it (rank 0 alone writes)."""
        if self.world.wait():
            self._qat_train()

    @_once("auto")
    def auto(self) -> Stage:
        """QUANT=auto: PTQ, then the most sensitive layers back to float until MAX_DROP holds."""
        from pipeline.accuracy_aware import Recovery
        from targets.fold import fold_batchnorm

        model_stage, float_stage, int8_stage, calib_stage = self.model(), self.float_artifact(), self.int8_artifact(), self.calibration()
        cfg = self.cfg
        key = {"code": code_digest("auto", self.target), "int8": int8_stage.digest, "data": fingerprint(list_images(self.data_dir)),
               "quant": asdict(cfg.quant), "settings": [cfg.max_drop, cfg.max_images, cfg.threads, cfg.precision, cfg.runs]}

        def work(tmp: Path) -> dict:
            model, labels = self._torch_model(model_stage, with_labels=True)
            calib = np.load(calib_stage.path("calibration.npy"))
            x, y = self._validation_arrays(labels)
            infer = val.torch_infer(model)
            float_top1 = val.accuracy(np.concatenate([infer(x[i : i + 32]) for i in range(0, len(x), 32)]), y)["top1"]
            recovery = Recovery(
                self.target, model, fold_batchnorm(model, torch.from_numpy(calib[:1])),
                float_stage.artifact, int8_stage.artifact,
                calib, cfg.quant, cfg.board.isa, x, y, float_top1, cfg.max_drop, self.host_threads, cfg.precision, cfg.runs, self.log,
            )
            result = recovery.run(tmp / "model")
            return {**result, "ops": self.target.describe(tmp / result["artifact"])}

        return self.run.stage("auto", key, work)

    def shipped(self) -> Stage:
        """The stage whose artifact is the int8 model validated, gated and bundled."""
        return {"ptq": self.int8_artifact, "qat": self.qat, "auto": self.auto}[self.cfg.quant.mode]()

    @_once("validate")
    def validation(self) -> Stage:
        model_stage, float_stage, ptq_stage, int8_stage = self.model(), self.float_artifact(), self.int8_artifact(), self.shipped()
        cfg = self.cfg
        key = {
            "code": code_digest("validate", self.target),
            "model": model_stage.digest,
            "float": float_stage.digest,
            "int8": int8_stage.digest,
            "ptq": ptq_stage.digest,
            "data": fingerprint(list_images(self.data_dir)),
            "settings": [cfg.threads, cfg.precision, cfg.warmup, cfg.runs, cfg.max_images],
            "arithmetic": self.arithmetic.to_dict(),
            "split": self._splits_data,
        }

        def work(tmp: Path) -> dict:
            model, labels = self._torch_model(model_stage, with_labels=True)
            samples = self._validation_samples(labels)
            (tmp / "files.json").write_text(json.dumps([str(s.path) for s in samples]))
            artifacts = {"float": float_stage.artifact, "int8": int8_stage.artifact}
            if ptq_stage is not int8_stage:  # QAT / auto: the PTQ model it started from, for comparison
                artifacts["ptq"] = ptq_stage.artifact
            runners = {k: self._runner(a, int8=k != "float") for k, a in artifacts.items()}
            out = val.classify_all(samples, self.preprocess, model, runners, progress)
            # timed as this host's runtime runs them: where int8 was judged emulated or unsaturated, fused again
            timed = {k: self._host_runner(a) if self.arithmetic.kind != "host" and k != "float" else runners[k]
                     for k, a in artifacts.items()}
            result = self._measure(out, runners, timed, model, samples)
            result["camera_input"] = self._camera_input(tmp, artifacts, runners, samples)
            result["arithmetic"] = self.arithmetic.to_dict()
            # where the target can compare its int8 and float graphs layer by layer (None elsewhere)
            batch = np.load(self.calibration().path("calibration.npy"))[:4]
            result["layer_errors"] = self.target.layer_errors(float_stage.artifact, int8_stage.artifact, batch)
            np.savez_compressed(tmp / "logits.npz", labels=out["labels"], **out["logits"])
            return result

        return self.run.stage("validate", key, work)

    @functools.cached_property
    def arithmetic(self) -> emulation.Arithmetic:
        """The int8 arithmetic that judges the artifact: the board's under QEMU where this host can emulate it, else
        this host's, with unsaturated sums where only this host's fused kernels would saturate."""
        return emulation.choose(self.cfg.board.isa, self.cfg.board.emulate)

    def _runner(self, artifact: Path, int8: bool):
        """An artifact as the board will compute it (int8 in self.arithmetic)."""
        return self.target.runner(artifact, self.host_threads, self.cfg.precision, purpose="judge" if int8 else "time",
                                  arithmetic=self.arithmetic)

    def _host_runner(self, artifact: Path):
        """An artifact as this host's runtime runs it: what latency is timed on."""
        return self.target.runner(artifact, self.host_threads, self.cfg.precision)

    def _measure(self, out: dict, runners: dict, timed: dict, model, samples) -> dict:
        """Accuracy and fidelity from the classified validation images and their runners; latency from `timed`."""
        cfg, logits, y = self.cfg, out["logits"], out["labels"]
        if len(y) == 0:
            raise PipelineError(f"all {len(out['skipped'])} images in {self.data_dir} are unreadable; check DATA")
        sample = np.zeros((1, 3, self.preprocess.image_size, self.preprocess.image_size), np.float32)
        self.log(f"[validate] latency at batch 1: {cfg.warmup} warm-up + {cfg.runs} timed runs each")
        int8_runner = runners["int8"]
        result = {
            "images": int(len(y)),
            "skipped": len(out["skipped"]),
            "skipped_files": out["skipped"][:50],
            "accuracy": {
                "float": val.accuracy(logits["torch"], y),
                "float_artifact": val.accuracy(logits["float"], y),
                "int8": val.accuracy(logits["int8"], y),
                "top1_agreement": val.agreement(logits["int8"], logits["torch"]),
            },
            "paired": val.paired_counts(logits["torch"], logits["int8"], y),
            "agree": metrics.agreeing(logits["torch"], logits["int8"]),
            "agreement_unlabelled": self._unlabelled_agreement(model, int8_runner, samples),
            "field_agreement": self._held_out_agreement(model, int8_runner),
            "float_parity": val.parity(logits["float"], logits["torch"]),
            "latency_ms": {k: val.latency(r, sample, cfg.warmup, cfg.runs) for k, r in timed.items() if k != "ptq"},
            "runtime": {"int8": int8_runner.runtime, "float": runners["float"].runtime, "threads": int8_runner.threads},
            "executed_precisions": timed["int8"].executed_precisions(),
        }
        if "ptq" in runners:
            result["accuracy"]["ptq"] = val.accuracy(logits["ptq"], y)
            result["accuracy"]["ptq_top1_agreement"] = val.agreement(logits["ptq"], logits["torch"])
            result["latency_ms"]["ptq"] = val.latency(timed["ptq"], sample, cfg.warmup, cfg.runs)
        return result

    def _camera_input(self, tmp: Path, artifacts: dict, runners: dict, samples) -> dict | None:
        """The float and int8 artifacts made to take the camera's pixels (`Target.with_pixel_input`: what the bundle
        ships), each against itself fed the host's preprocessing, on the validation and calibration photos; None
        where the target leaves preprocessing to the host."""
        made = {k: self.target.with_pixel_input(artifacts[k], self.preprocess, tmp / f"{k}_pixels") for k in ("float", "int8")}
        if None in made.values():
            return None
        # one artifact against another form of itself: this host's arithmetic is as good a judge as the board's
        if self.arithmetic.emulated:
            runners = {k: self._host_runner(artifacts[k]) for k in made}
        board = {k: self._host_runner(p) if self.arithmetic.emulated else self._runner(p, int8=k == "int8") for k, p in made.items()}
        for runner in board.values():
            runner.accept_pixels(self.preprocess)  # as the bundle's runner does (LiteRT's table; others hold it)
        calibrated = [] if self.calibration().result.get("random") else self._calibration_files()
        paths = list(dict.fromkeys([str(s.path) for s in samples] + calibrated))[:CAMERA_CHECK_IMAGES]
        fed, host = {k: [] for k in made}, {k: [] for k in made}
        for _, img in read_images(progress(paths, desc="camera input check")):
            pixels = self.preprocess.pixels(img)
            for k in made:
                fed[k].append(board[k].infer(pixels[None]))
                host[k].append(runners[k].infer(self.preprocess.normalize(pixels)[None]))
        timed = self._host_runner(made["int8"]) if self.arithmetic.kind == "unsaturated" else board["int8"]
        return {
            "artifacts": {k: p.name for k, p in made.items()},
            "images": len(fed["int8"]),
            "pixel_type": np.dtype(board["int8"].input_dtype).name,  # uint8; float32 where the runtime wants it
            "by": board["int8"].pixels_by,
            **{k: metrics.parity(np.concatenate(fed[k]), np.concatenate(host[k])) for k in made},
            "latency_ms": val.latency(timed, self.preprocess.blank(pixels=True), self.cfg.warmup, self.cfg.runs),
        }

    def report(self) -> dict:
        """Report and gate; when the gate holds, the bundle for the board."""
        report = self._report()
        if report["ships"]:
            bundle = self.bundle(report)
            write_tarball(bundle.folder, self.cfg.run_dir / "bundle.tar.gz")
            report["bundle"] = str(bundle.folder)
            self.log(f"[bundle] {bundle.folder} (and bundle.tar.gz): copy it to the board and run ./run.sh")
        else:
            stale = " (the bundle/ already there is from an earlier passing run and holds that run's model)" if (
                self.cfg.run_dir / "bundle").exists() else ""
            why = "the verdict is inconclusive and STRICT is set" if report["verdict"] == "inconclusive" else "the int8 model failed the gate"
            self.log(f"[bundle] not written: {why}{stale}")
        return report

    def bundle(self, report: dict) -> Stage:
        model_stage, float_stage, int8_stage = self.model(), self.float_artifact(), self.shipped()
        cfg = self.cfg
        key = {
            "validate": self.validation().digest,
            "code": code_digest("bundle", self.target),
            "settings": [asdict(cfg.camera), cfg.max_drop, cfg.threads, cfg.precision],
        }

        def work(tmp: Path) -> dict:
            _, labels = self._torch_model(model_stage, with_labels=True)
            int8, float_ = int8_stage.artifact, float_stage.artifact
            if camera := self.validation().result.get("camera_input"):  # the artifacts that take the camera's pixels
                int8, float_ = (self.validation().path(camera["artifacts"][k]) for k in ("int8", "float"))
            write_bundle(tmp, cfg, self.spec, self.target, self.preprocess, labels, report, int8, float_, bool(camera))
            return {"runtime": self.target.device_runtime}

        return self.run.stage("bundle", key, work)

    def _report(self) -> dict:
        stages = {
            "model": self.model(),
            "calibration": self.calibration(),
            "float": self.float_artifact(),
            "int8": self.int8_artifact(),
        }
        if self.cfg.quant.mode != "ptq":
            stages[self.cfg.quant.mode] = self.shipped()
        stages["validate"] = self.validation()
        return write_report(self.cfg, self.spec, self.preprocess, stages, self.data_dir, self.data_is_sample, len(SAMPLE_PHOTOS), self.log)

    # -- helpers ------------------------------------------------------------------------------
    def _unlabelled_agreement(self, model, int8_runner, samples) -> dict:
        """Top-1 agreement of int8 with float on the calibration images that are not validation images.

        Agreement needs no labels, so these images tighten its interval (the default run has only 3
        labelled photos but 16 photos in all). They were used to calibrate, which the report says.
        """
        calib_stage = self.calibration()
        if calib_stage.result.get("random") or not calib_stage.path("files.json").exists():
            return {"images": 0, "agree": 0, "source": None}
        # nor images QAT trained on: it learnt to agree with float there
        trained = json.loads(self.qat().path("train_files.json").read_text()) if self.cfg.quant.mode == "qat" else []
        rows = val.rows_not_among(self._calibration_files(), [s.path for s in samples] + trained)
        if not rows:
            return {"images": 0, "agree": 0, "source": calib_stage.result["source"]}
        batch = np.load(calib_stage.path("calibration.npy"))[rows]
        agree, _ = _agreeing(model, int8_runner, (x[None] for x in progress(batch, desc="agreement on calibration images")))
        return {"images": len(rows), "agree": agree, "source": calib_stage.result["source"]}

    def _held_out_agreement(self, model, int8_runner) -> dict | None:
        """Top-1 agreement of int8 with float on the captured frames held out from calibration (CALIB = a folder
        make capture wrote): the board's own camera, no labels needed, never calibrated on. None for other CALIBs."""
        split = calibration.captured_split(self.cfg.calib) if self.cfg.calib and self.cfg.calib != calibration.RANDOM else None
        if not split or not split[1]:
            return None
        frames = read_images(progress(split[1], desc="held-out captured frames"))
        agree, images = _agreeing(model, int8_runner, (self.preprocess(img)[None] for _, img in frames))
        ci95 = list(metrics.wilson(agree, images)) if images else None
        return {"source": str(self.cfg.calib), "images": images, "agree": agree, "agreement": agree / images if images else None,
                "ci95": ci95, "calibration_frames": len(split[0])}

    def _calibration_files(self) -> list[str]:
        """The image behind each row of calibration.npy."""
        return json.loads(self.calibration().path("files.json").read_text())

    def _train_folder(self) -> Path:
        return check_folder(self.cfg.train_data, "TRAIN_DATA") if self.cfg.train_data else self.data_dir

    @property
    def host_threads(self) -> int:
        """The board's thread count (a Pi profile's 4), never more than this host's cores: timing 4 threads
        on 2 cores measures the contention, not the model (0 = the runtime's default)."""
        return min(self.cfg.threads, os.cpu_count() or 1) if self.cfg.threads else 0

    @property
    def _splits_data(self) -> bool:
        """Labelled QAT with no TRAIN_DATA trains on half of DATA and every stage validates on the other half."""
        return self.cfg.quant.mode == "qat" and self.cfg.quant.qat_data == "labelled" and not self.cfg.train_data

    @property
    def _distils_on_calibration(self) -> bool:
        return self.cfg.quant.mode == "qat" and self.cfg.quant.qat_data == "calibration"

    def _train_samples(self, labels: list[str]):
        what = "TRAIN_DATA" if self.cfg.train_data else "DATA"
        samples = labelled_samples(self._train_folder(), labels, what, self.spec.name)
        return holdout_split(samples)[0] if self._splits_data else samples

    def _validation_samples(self, labels: list[str]):
        samples = labelled_samples(self.data_dir, labels, "DATA", self.spec.name)
        if self._splits_data:
            samples = holdout_split(samples)[1]
        if self._distils_on_calibration:  # calibration drawn from DATA: QAT trained on those, so they are not validated
            samples = [samples[i] for i in val.rows_not_among([s.path for s in samples], self._calibration_files())]
        return samples[: self.cfg.max_images or None]

    def _validation_arrays(self, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """DATA's readable images, preprocessed, with their labels (for the accuracy-aware search)."""
        samples = self._validation_samples(labels)
        xs, ys = [], []
        for s, img in read_images(progress(samples, desc="validation images"), lambda s: s.path):
            xs.append(self.preprocess(img))
            ys.append(s.label)
        if not xs:
            raise PipelineError(f"no readable labelled images in {self.data_dir}; QUANT=auto needs DATA")
        return np.stack(xs).astype(np.float32), np.asarray(ys)

    def _torch_model(self, model_stage: Stage, with_labels: bool = False):
        loaded = load(self.spec, str(model_stage.path("model.pt")))
        fix_same_padding(loaded.model, self.preprocess.image_size)  # one constant Pad per conv in exported graphs
        return (loaded.model, loaded.labels) if with_labels else loaded.model


def run_until(cfg: DeployConfig, stage: str, log=print):
    """Run the chain up to `stage` (earlier stages are reused from the run folder when unchanged).

    Under torchrun (WORLD_SIZE > 1) rank 0 runs the chain and the other ranks join QAT's training only.
    """
    deploy = Deploy(cfg, log)
    if not deploy.world.main:
        deploy.follow_qat()
        return None
    try:
        deploy.check_inputs(stage)
        return getattr(deploy, STAGES[stage][1])()
    finally:
        deploy.world.announce(False)  # no QAT training in this run: the other ranks stop waiting


def _agreeing(model, int8_runner, tensors) -> tuple[int, int]:
    """(images where int8's top-1 is float's, images) over NCHW tensors of one image each."""
    reference, agree, images = val.torch_infer(model), 0, 0
    for x in tensors:
        agree += int(reference(x).argmax() == np.asarray(int8_runner.infer(x)).argmax())
        images += 1
    return agree, images

"""Config: defaults, the target profile, KEY=value overrides."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edge.errors import UserError
from pipeline import PipelineError
from pipeline.config import DeployConfig, QuantConfig, load_profile, make_config, override


def test_profile_then_overrides():
    assert load_profile("openvino")["precision"] == "f32"
    cfg = make_config("openvino", {"model": "b1", "max_drop": "0.5", "quant.preset": "performance", "threads": "2"})
    assert (cfg.model, cfg.max_drop, cfg.quant.preset, cfg.threads) == ("b1", 0.5, "performance", 2)
    assert cfg.quant.bias_correction == "full"
    assert cfg.run_dir == Path("runs/b1-openvino-ptq")


def test_none_and_bool_values():
    cfg = override(DeployConfig(), {"max_images": "none", "quant.bias_correction": "fast", "out": "x"})
    assert cfg.max_images is None and cfg.quant.bias_correction == "fast" and cfg.run_dir == Path("x")


def test_bad_keys_and_values_are_one_line_errors():
    with pytest.raises(PipelineError, match="unknown setting 'max_dorp'"):
        override(DeployConfig(), {"max_dorp": "1"})
    with pytest.raises(PipelineError, match="not a valid float"):
        override(DeployConfig(), {"max_drop": "lots"})


def test_preset_follows_the_models_activation():
    assert make_config("openvino", {"model": "lite0"}).quant.preset == "performance"  # ReLU6: non-negative
    assert make_config("openvino", {"model": "b0"}).quant.preset == "mixed"  # swish's negative tail
    assert make_config("onnx", {"model": "lite2", "quant.preset": "mixed"}).quant.preset == "mixed"


def test_quant_config_becomes_nncf_arguments():
    import nncf

    from nncf.quantization.advanced_parameters import OverflowFix

    kw = QuantConfig(preset="performance").nncf_kwargs(nncf, 10, saturates=False)
    advanced = kw.pop("advanced_parameters")
    assert kw == {"preset": nncf.QuantizationPreset.PERFORMANCE, "subset_size": 10, "fast_bias_correction": False}
    assert advanced.overflow_fix == OverflowFix.DISABLE  # 32-bit int8 sums: full 8-bit weights
    assert advanced.disable_bias_correction is False
    assert QuantConfig(bias_correction="fast").nncf_kwargs(nncf, 10, False)["fast_bias_correction"] is True
    assert QuantConfig(bias_correction="off").nncf_kwargs(nncf, 10, False)["advanced_parameters"].disable_bias_correction is True
    # One activation scale per tensor unless asked (NNCF's own default: per channel on depthwise inputs)
    assert advanced.activations_quantization_params.per_channel is False
    assert QuantConfig(activation_scales="per-channel").nncf_kwargs(nncf, 10, False)["advanced_parameters"].activations_quantization_params is None
    with pytest.raises(PipelineError, match="unknown quant.bias_correction"):
        QuantConfig(bias_correction="yes")
    assert QuantConfig().nncf_kwargs(nncf, 10, saturates=True)["advanced_parameters"].overflow_fix == OverflowFix.ENABLE
    with pytest.raises(PipelineError, match="unknown quant.preset"):
        QuantConfig(preset="fast")  # refused when made, not when a target first asks NNCF for it


def test_activation_scales_are_checked_early_and_tensorrt_takes_per_tensor_only():
    assert make_config("openvino", {"quant.activation_scales": "per-channel"}).quant.activation_scales == "per-channel"
    with pytest.raises(PipelineError, match="use one of per-tensor, per-channel"):
        make_config("openvino", {"quant.activation_scales": "channel"})
    with pytest.raises(PipelineError, match="TensorRT quantizes activations per tensor only"):
        make_config("jetson", {"quant.activation_scales": "per-channel"})


@pytest.mark.parametrize("key, value, message", [
    ("quant.preset", "accurate", "unknown quant.preset='accurate'; use one of auto, mixed, performance"),
    ("quant.ort_calibration", "Entropy", "quant.ort_calibration is a target's own setting now: SET=settings.calibration=..."),
    ("quant.bias_correction", "on", "unknown quant.bias_correction='on'"),
    ("quant.qat_data", "frames", "unknown quant.qat_data='frames'"),
    ("precision", "fp32", "unknown precision='fp32'; use one of f32, bf16, f16"),
    ("board.isa", "neon", "unknown int8 ISA 'neon'"),
    ("model", "b9", "unknown model 'b9'"),
    ("calib_size", "0", "calib_size=0 is out of range; use a number >= 1"),
    ("runs", "0", "runs=0 is out of range"),
    ("image_size", "8", "image_size=8 is out of range; use a number >= 32"),
    ("quant.qat_lr", "0", "quant.qat_lr=0.0 must be a positive learning rate"),
    ("camera.fps", "0", "camera.fps=0 is out of range"),
])
@pytest.mark.parametrize("target", ["onnx", "openvino", "tflite"])
def test_every_setting_is_checked_on_every_target(key, value, message, target):
    """A setting only one target's quantizer reads is still refused on the others, when the config is made."""
    with pytest.raises(PipelineError) as e:
        make_config(target, {key: value})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_train_settings_are_checked():
    from pipeline.config import TrainConfig

    for kwargs, message in [({"val_split": 1.0}, "val_split=1.0 is a share"), ({"epochs": 0}, "epochs=0 is out of range"),
                            ({"lr": 0.0}, "lr=0.0 must be a positive"), ({"optimizer": "adam"}, "unknown optimizer='adam'")]:
        with pytest.raises(PipelineError, match=message):
            TrainConfig(**kwargs)


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DeployConfig().model = "b7"
    with pytest.raises(dataclasses.FrozenInstanceError):
        DeployConfig().quant.mode = "qat"


def test_a_bad_choice_is_one_line_with_the_valid_ones(capsys):
    """CLI choices come from the config, and a wrong one is one line, not a usage dump."""
    from pipeline.cli import main

    with pytest.raises(SystemExit) as e:
        main(["deploy", "--quant", "fp4"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(lines) == 1, lines
    assert "invalid choice: 'fp4'" in lines[0] and all(mode in lines[0] for mode in ("ptq", "qat", "auto"))


def test_min_agreement_is_a_share(tmp_path, capsys):
    from pipeline.cli import main

    assert main(["int8", "--set", "quant.min_agreement=97", "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: quant.min_agreement=97.0 is a share of images") and "\n" not in err


def test_the_shared_config_names_no_target():
    """What is a target's own (its recipe, the settings it refuses) lives in its module: config.py branches on none."""
    from pathlib import Path

    import targets

    source = (Path(__file__).resolve().parent.parent / "pipeline" / "config.py").read_text()
    assert not [name for name in targets.TARGETS if f'"{name}"' in source or f"'{name}'" in source]
    jetson = targets.get_target("jetson")
    with pytest.raises(Exception, match="TensorRT quantizes activations per tensor only"):
        make_config("jetson", {"quant.activation_scales": "per-channel"})
    assert jetson.recipe(make_config("jetson", {}).quant, "gpu")["activation_scales"] == "per-tensor"


def test_a_target_declares_its_own_settings_and_config_names_no_target():
    """TARGET=onnx's calibration method is its own setting (targets.onnx.OnnxRuntimeSettings), made from its profile
    and SET=settings.<field>, checked where it is made; the shared config names no target."""
    import re

    import pipeline.config

    assert make_config("onnx", {}).settings.calibration == "MinMax"  # its profile's
    assert make_config("onnx", {"settings.calibration": "Entropy"}).settings.calibration == "Entropy"
    assert make_config("onnx", {"settings.calibration": "Entropy"}).ptq_settings()["settings"] == {"calibration": "Entropy"}
    with pytest.raises(UserError, match="unknown settings.calibration='kl'; use one of MinMax"):
        make_config("onnx", {"settings.calibration": "kl"})
    with pytest.raises(UserError, match="this target has no settings of its own"):
        make_config("openvino", {"settings.calibration": "Entropy"})
    source = Path(pipeline.config.__file__).read_text()
    named = re.findall(r"\b(openvino|onnx|jetson|tflite|rpi|tensorrt|litert|xnnpack)\b", source, re.I)
    assert not named, f"pipeline/config.py names targets: {sorted(set(named))}"

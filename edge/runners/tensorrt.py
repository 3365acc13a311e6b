"""TensorRT on the board: build an engine from the Q/DQ ONNX (engines are not portable) and run it.

Engines are cached keyed by the ONNX file's sha256, the TensorRT version, the GPU name and
the precision, so a changed model or a JetPack upgrade rebuilds and nothing stale is loaded.
Needs `tensorrt` (JetPack ships it: do not pip-install it on a Jetson) and `cuda-python`
for device memory; no PyTorch.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from edge.errors import MissingRuntime
from edge.files import file_sha256
from edge.install import how_to_install
from edge.runners.base import PIXELS_INPUT, Runner, Runtime, as_input


class TensorRTUnavailable(MissingRuntime):
    pass


def _trt():
    try:
        import tensorrt as trt
    except ImportError:
        raise TensorRTUnavailable(f"TensorRT is not installed: {how_to_install('tensorrt')}", "tensorrt") from None
    return trt


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            raise TensorRTUnavailable(f"the TensorRT runner needs cuda-python: {how_to_install('cuda')}", "cuda") from None
    return cudart


def _check(result):
    """cuda-python returns (err, *values); raise on any error, return the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA error {err}")
    return values[0] if len(values) == 1 else values


def gpu_name() -> str:
    cudart = _cudart()
    props = _check(cudart.cudaGetDeviceProperties(0))
    name = props.name
    return (name.decode() if isinstance(name, bytes) else str(name)).strip("\x00 ")


def is_qdq(onnx_path: str | Path) -> bool:
    """Whether an ONNX file carries Q/DQ nodes (an int8 model for explicit quantization)."""
    return b"QuantizeLinear" in Path(onnx_path).read_bytes()


def engine_cache_key(onnx_path: str | Path, trt_version: str, gpu: str, precision: str) -> str:
    """What an engine depends on: the exact ONNX bytes, TensorRT's version, the GPU, the precision."""
    parts = {"onnx_sha256": file_sha256(onnx_path), "tensorrt": trt_version, "gpu": gpu, "precision": precision}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def build_engine(onnx_path: str | Path, cache_dir: str | Path, precision: str = "int8", workspace_mb: int = 1024, log=print) -> Path:
    """The cached engine for this ONNX on this GPU and TensorRT, built if missing.

    int8: the Q/DQ nodes decide what runs in int8 (explicit quantization); FP16 is allowed for
    the layers the Q/DQ graph leaves in float. fp16/fp32: a float ONNX built at that precision.
    """
    trt = _trt()
    onnx_path, cache_dir = Path(onnx_path), Path(cache_dir)
    key = engine_cache_key(onnx_path, trt.__version__, gpu_name(), precision)
    engine_path = cache_dir / f"{onnx_path.stem}-{precision}-{key[:16]}.engine"
    if engine_path.exists():
        log(f"engine cache hit: {engine_path.name}")
        return engine_path
    log(f"building TensorRT {trt.__version__} {precision} engine from {onnx_path.name} (minutes on a Jetson)")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    # TensorRT 11 is strongly typed and has no precision flags: the Q/DQ graph says it all.
    if precision in ("int8", "fp16") and hasattr(trt.BuilderFlag, "FP16"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8" and hasattr(trt.BuilderFlag, "INT8"):
        config.set_flag(trt.BuilderFlag.INT8)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".engine-")
    with os.fdopen(fd, "wb") as f:
        f.write(bytes(serialized))
    os.replace(tmp, engine_path)  # a half-written engine is never loaded
    return engine_path


class TensorRTRunner(Runner):
    """Runs a serialized engine at batch 1 with the name-based tensor API (TensorRT >= 8.5)."""

    def __init__(self, engine_path: str | Path):
        trt = _trt()
        self.cudart = _cudart()
        logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise RuntimeError(f"could not load engine {engine_path}; delete it to rebuild")
        self.context = self.engine.create_execution_context()
        self.stream = _check(self.cudart.cudaStreamCreate())
        self.buffers = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            host = np.empty(shape, dtype)
            device = _check(self.cudart.cudaMalloc(host.nbytes))
            self.context.set_tensor_address(name, int(device))
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            self.buffers[name] = (host, device, is_input)
            if is_input:
                self.takes_pixels = name == PIXELS_INPUT  # float32 pixels (targets.jetson): the camera's bytes, cast
        self.threads = 1
        self.runtime = f"tensorrt {trt.__version__} ({gpu_name()})"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        cudart = self.cudart
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        outs = []
        for i in range(batch.shape[0]):
            for host, device, is_input in self.buffers.values():
                if is_input:
                    np.copyto(host, as_input(batch[i : i + 1], host.dtype))
                    _check(cudart.cudaMemcpyAsync(device, host.ctypes.data, host.nbytes, h2d, self.stream))
            self.context.execute_async_v3(self.stream)
            for host, device, is_input in self.buffers.values():
                if not is_input:
                    _check(cudart.cudaMemcpyAsync(host.ctypes.data, device, host.nbytes, d2h, self.stream))
            _check(cudart.cudaStreamSynchronize(self.stream))
            outs.append(next(h.copy() for h, _, inp in self.buffers.values() if not inp))
        return np.concatenate(outs, axis=0)

    def __del__(self):
        for _, device, _ in getattr(self, "buffers", {}).values():
            self.cudart.cudaFree(device)


def available() -> tuple[bool, str]:
    """Whether a real engine can be built here, and why not."""
    try:
        _trt()
        gpu_name()
        return True, ""
    except (TensorRTUnavailable, RuntimeError) as e:
        return False, str(e)
    except Exception as e:  # no driver, no device
        return False, f"no usable NVIDIA GPU ({type(e).__name__}: {e})"


def _load(artifact: Path, threads: int, precision: str, cache_dir: Path | None, exact: bool) -> TensorRTRunner:
    # A Q/DQ file is int8 by construction; a float file is the fp32 reference unless asked for fp16. TensorRT sums
    # int8 products in int32: `exact` changes nothing.
    engine_precision = "int8" if is_qdq(artifact) else ("fp32" if precision == "f32" else "fp16")
    return TensorRTRunner(build_engine(artifact, cache_dir or Path(artifact).parent / "engines", engine_precision))


# one frame at a time here: throughput mode is for the CPU runtimes
RUNTIME = Runtime("tensorrt", load=_load, lanes=False)

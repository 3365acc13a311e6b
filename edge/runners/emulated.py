"""A runner on an emulated CPU: the artifact runs in a child Python under QEMU user mode as another CPU model.

Int8 answers depend on the CPU's int8 instructions (edge.isa): x86 without VNNI saturates u8×s8 pair sums in 16 bits,
VNNI and Arm's dot product do not. QEMU user mode runs the same runtimes' real kernels under another CPU's
instruction set, exactly and about 100x slower, so a host can see the int8 answers of a board it is not: the gate
judges int8 in the board's arithmetic (pipeline.emulation) and `make test-isa` runs the int8 tests on other CPUs.

The child is `python -m edge.runners.emulated RUNTIME ARTIFACT THREADS PRECISION EXACT`: it loads the runner and answers
batches sent as a JSON header line plus raw bytes on stdin, one reply of the same form each on stdout.
Device side: numpy and the standard library.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edge import isa
from edge.errors import UserError
from edge.runners import load_runner
from edge.runners.base import Runner


def _send(stream, header: dict, payload: bytes = b"") -> None:
    stream.write(json.dumps(header).encode() + b"\n" + payload)
    stream.flush()


def _send_array(stream, a: np.ndarray, **extra) -> None:
    a = np.ascontiguousarray(a)
    _send(stream, {"dtype": a.dtype.str, "shape": list(a.shape), "bytes": a.nbytes, **extra}, a.tobytes())


def _receive(stream) -> tuple[dict, np.ndarray | None]:
    line = stream.readline()
    if not line:
        raise EOFError("the other side closed the pipe")
    header = json.loads(line)
    if "dtype" not in header:
        return header, None
    data = stream.read(header["bytes"])
    return header, np.frombuffer(data, np.dtype(header["dtype"])).reshape(header["shape"])


def _one_line(e: Exception) -> str:
    """A runtime's error as one line: its last non-empty line says what went wrong (OpenVINO's first ones say where)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return f"{type(e).__name__}: {lines[-1] if lines else ''}"


def serve(runtime: str, artifact: str, threads: int, precision: str, exact: bool) -> None:
    """The child: load the runner, say what it is, then answer each batch with its logits until stdin closes."""
    out, inp = sys.stdout.buffer, sys.stdin.buffer
    try:
        runner = load_runner(runtime, Path(artifact), threads, precision, unsaturated_int8=exact)
    except Exception as e:  # one line back to the host, which raises it there
        _send(out, {"error": _one_line(e)})
        return
    _send(out, {"runtime": runner.runtime, "threads": runner.threads, "takes_pixels": runner.takes_pixels,
                "input_dtype": np.dtype(getattr(runner, "input_dtype", np.float32)).str, "isa": isa.detect(),
                "features": isa.features(), "executed": runner.executed_precisions()})
    while True:
        try:
            _, batch = _receive(inp)
        except EOFError:
            return
        try:
            _send_array(out, runner.infer(batch))
        except Exception as e:
            _send(out, {"error": _one_line(e)})


class EmulatedRunner(Runner):
    """`runtime`'s runner for `artifact` in a child process started by `launcher` (a Python on an emulated CPU, e.g.
    ["qemu-x86_64", "-cpu", "Haswell", sys.executable]); `cpu` names that CPU in the runtime label. `env` is the
    child's environment (default: this one, with this package importable)."""

    def __init__(self, launcher: list[str], cpu: str, runtime: str, artifact: Path, threads: int = 1,
                 precision: str = "f32", unsaturated_int8: bool = False, env: dict | None = None):
        self.cpu = cpu
        self._log = tempfile.TemporaryFile()
        if env is None:
            code_root = str(Path(__file__).resolve().parents[2])
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [code_root, os.environ.get("PYTHONPATH")]))}
        argv = [*launcher, "-m", "edge.runners.emulated", runtime, str(artifact), str(threads), precision, "1" if unsaturated_int8 else "0"]
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=env)
        except OSError as e:
            raise UserError(f"cannot start the emulated {cpu} ({argv[0]}: {e.strerror})") from None
        hello = self._reply()
        self.isa, self.features = hello["isa"], hello["features"]
        self.threads, self.takes_pixels = hello["threads"], hello["takes_pixels"]
        self.input_dtype = np.dtype(hello["input_dtype"]).type
        self._executed = hello["executed"]
        self.runtime = f"{hello['runtime']} on emulated {cpu} ({self.isa})"

    def _reply(self) -> dict | np.ndarray:
        try:
            header, array = _receive(self.proc.stdout)
        except (EOFError, ValueError):
            self.proc.wait()
            raise UserError(f"the emulated {self.cpu} exited {self.proc.returncode}: {self._stderr_tail()}") from None
        if "error" in header:
            raise UserError(f"on the emulated {self.cpu}: {header['error']}")
        return header if array is None else array

    def _stderr_tail(self) -> str:
        self._log.seek(0)
        lines = [l for l in self._log.read().decode(errors="replace").splitlines()
                 if l.strip() and "TCG doesn't support requested feature" not in l]
        return lines[-1] if lines else "no message"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        try:
            _send_array(self.proc.stdin, np.asarray(batch))
        except BrokenPipeError:
            self.proc.wait()
            raise UserError(f"the emulated {self.cpu} exited {self.proc.returncode}: {self._stderr_tail()}") from None
        return np.array(self._reply())

    def executed_precisions(self) -> dict[str, int]:
        return dict(self._executed)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


if __name__ == "__main__":
    runtime, artifact, threads, precision, exact = sys.argv[1:6]
    serve(runtime, artifact, int(threads), precision, exact == "1")

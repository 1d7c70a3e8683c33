"""Run the generated C model on the host: gcc builds model.c + firmware/nn into a shared library loaded with
ctypes, so tests and benchmarks execute the very same C that the firmware runs."""
from __future__ import annotations

import ctypes
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edgecore.errors import UserError

from edgecore import tflite_graph
from .compile import compile_graph

NN_DIR = Path(__file__).resolve().parents[2] / "firmware" / "nn"
CFLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared"]


def kernel_sources() -> list[Path]:
    return sorted(NN_DIR.glob("*.c"))


class HostModel:
    """HostModel(tflite_path).run(int8 NHWC images) -> int8 [N, classes]; .arena_bytes, .summary."""

    def __init__(self, tflite_path: str | Path, class_names: list[str] | None = None):
        if shutil.which("gcc") is None:
            raise UserError("gcc not found: the host build of the compiled model needs it")
        compiled = compile_graph(tflite_graph.load(tflite_path), class_names)
        self.summary = compiled.summary
        self.arena_bytes = compiled.summary["arena_bytes"]
        self._dir = tempfile.TemporaryDirectory(prefix="rp2040_host_")
        d = Path(self._dir.name)
        (d / "model.c").write_text(compiled.model_c)
        (d / "model.h").write_text(compiled.model_h)
        lib = d / "libmodel.so"
        cmd = ["gcc", *CFLAGS, f"-I{NN_DIR}", f"-I{d}", str(d / "model.c"), *map(str, kernel_sources()),
               "-o", str(lib)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"host build of the generated model failed:\n{r.stderr}")
        self._lib = ctypes.CDLL(str(lib))
        self._lib.model_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self._lib.model_run.restype = ctypes.c_int
        self.input_shape = tuple(compiled.summary["input_shape"][1:])
        self.num_classes = compiled.summary["num_classes"]

    def run(self, images: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(images, dtype=np.int8)
        if x.shape[1:] != self.input_shape:
            raise UserError(f"expected int8 images of shape [N, {', '.join(map(str, self.input_shape))}], "
                            f"got {list(x.shape)}")
        out = np.zeros((len(x), self.num_classes), np.int8)
        for i in range(len(x)):
            self._lib.model_run(x[i].ctypes.data, out[i].ctypes.data)
        return out

"""What every target's measurement shares: the run folder, the test split, the float baseline, probes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgecore.errors import UserError
from edgecore.manifest import verify_inputs
from edgecore.preprocess import to_float_nchw
from compress.data import load_dataset, split_name
from export.targets_common import check_outputs, eval_split, load_onnx, nchw_input, ort_outputs, ort_session

from .results import Point, Result, Row, info, measured, not_run
from edgecore.targets import TargetSpec, runs_on

FLOAT_ONNX = "quant/student_float.onnx"
QDQ_ONNX = "quant/student_int8_qdq.onnx"
INT8_TFLITE = "quant/model_int8.tflite"


@dataclass
class Deployed:
    """The model the device runs, as the target's runtime runs it: the shift suite and --eval-data go through it."""
    runtime: str                                 # for row labels, e.g. "TFLite-Micro"
    size: tuple[int, int]                        # input (height, width)
    predict: Callable[[np.ndarray], np.ndarray]  # uint8 NHWC images -> class indices
    test_pred: np.ndarray                        # its predictions on the test set the accuracy rows used


@dataclass
class Context:
    run_dir: Path
    spec: TargetSpec
    facts: dict
    build_dir: Path
    device_port: str | None = None
    limit: int | None = None
    cache: dict = field(default_factory=dict)  # shared by every target of one `--all`
    eval_data: object = None                   # evaldata.EvalFolder from --eval-data
    deployed: Deployed | None = None           # set by the target's measure function once accuracy is measured

    @property
    def on_device(self) -> bool:
        return runs_on(self.spec, self.facts)

    def quant_file(self, rel: str) -> Path:
        """A pipeline output; missing means the pipeline has not run (bad input, exit 2)."""
        p = self.run_dir / rel
        if not p.is_file():
            raise UserError(f"{p} not found: run `python -m compress all --run {self.run_dir}` "
                            f"(or `python -m compress quantize --run {self.run_dir}`) first")
        verify_inputs(self.run_dir, "quant", [p], f"python -m compress quantize --run {self.run_dir}")
        return p

    def test_set(self, size: tuple[int, int]):
        """(uint8 NHWC images, int labels, class names) of the test split at this input size."""
        key = ("test", size, self.limit)
        if key not in self.cache:
            self.cache[key] = eval_split(self.run_dir, "test", size, self.limit)
        return self.cache[key]

    def _dataset(self) -> tuple[dict, int, int]:
        """(source, test images, unlabeled-pool images whose true label is known) of the run's dataset."""
        if "dataset" not in self.cache:
            ds = load_dataset(self.run_dir)
            pool = ds.split("pool")
            self.cache["dataset"] = (ds.source, len(ds.split("test")), int((ds.pool_labels(pool) >= 0).sum()))
        return self.cache["dataset"]

    @property
    def pool_known(self) -> int:
        return self._dataset()[2]

    @property
    def test_total(self) -> int:
        """Images in the whole test split (a --limit run measures fewer)."""
        return self._dataset()[1]

    def test_name(self, n: int | None = None) -> str:
        """The images of an accuracy on n test images (default: the whole split), e.g. 'procedural test split,
        600 images'."""
        return split_name(self._dataset()[0], self.test_total if n is None else n, self.test_total)

    def float_baseline(self, result: Result) -> float:
        """Accuracy (%) of the float student through onnxruntime: the reference for every drop."""
        path = self.quant_file(FLOAT_ONNX)
        if "float" not in self.cache:
            _, h, w = nchw_input(load_onnx(path))
            x, y, classes = self.test_set((h, w))
            # Every target's accuracy is measured against this one: its outputs must be the dataset's classes.
            pred = check_outputs(ort_outputs(ort_session(path), to_float_nchw(x)), classes, path).argmax(1)
            self.cache["float"] = (100.0 * float(np.mean(pred == y)), len(y))
        acc, n = self.cache["float"]
        result.rows.append(info(f"float accuracy (onnxruntime, student_float.onnx), {self.test_name(n)}", acc, "%",
                                "the reference for the drop"))
        result.points.append(Point("fp32", "onnxruntime", path.stat().st_size, acc))
        return acc

    def probe(self, runtime: str, model: Path, x: np.ndarray, threads: int = 1) -> dict:
        """Latency (median of 100 after 10 warm-up) and peak RAM of one model in a fresh process."""
        with tempfile.TemporaryDirectory() as tmp:
            inp = Path(tmp) / "input.npy"
            np.save(inp, x)
            proc = subprocess.run([sys.executable, "-m", "benchmarks.probe", runtime, str(model), str(inp),
                                   str(threads)], capture_output=True, text=True, cwd=Path(__file__).parent.parent,
                                  env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"{runtime} probe failed: {tail}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


def drop_row(label: str, float_acc: float, acc: float) -> Row:
    return measured("drop_pts", label, round(float_acc - acc, 4), "pts", "float accuracy minus this one")


def timing_rows(ctx: Context, result: Result, runtime: str, model: Path, x: np.ndarray, label: str) -> None:
    """Latency and peak RAM: budgeted when this machine is the target, an info row otherwise."""
    try:
        p = ctx.probe(runtime, model, x)
    except RuntimeError as e:
        result.rows += [not_run("latency_ms", f"latency ({label})", str(e)),
                        not_run("ram_bytes", f"peak RAM ({label})", str(e))]
        return
    how = f"median of {p['runs']} after {p['warmup']} warm-up, {p['threads']} thread, batch 1"
    ram_how = "VmHWM - VmRSS around load + inference" if p["peak_exact"] else "ru_maxrss (peak not resettable)"
    if ctx.on_device:
        result.rows += [measured("latency_ms", f"latency ({label})", round(p["latency_ms"], 4), "ms", how),
                        measured("ram_bytes", f"peak RAM ({label})", p["peak_ram_bytes"], "B", ram_how)]
        return
    where = f"this machine is not a {ctx.spec.name} ({ctx.facts.get('machine')})"
    result.rows += [not_run("latency_ms", f"latency on {ctx.spec.name}", where),
                    not_run("ram_bytes", f"peak RAM on {ctx.spec.name}", where),
                    info(f"host latency ({label}, {ctx.facts.get('machine')})", round(p["latency_ms"], 4), "ms",
                         how + "; not the device"),
                    info(f"host peak RAM ({label})", p["peak_ram_bytes"], "B", ram_how + "; not the device")]

"""What every device exporter shares: input files, evaluation data, reference predictions, timing, staging."""
from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from compress.data import load_dataset, load_images

from edgecore import preprocess
from edgecore.errors import UserError
from edgecore.io import ensure_dir, write_json_atomic, write_text_atomic
from edgecore.manifest import record_stage, verify_inputs

FLOAT_ONNX = "quant/student_float.onnx"
QDQ_ONNX = "quant/student_int8_qdq.onnx"
INT8_TFLITE = "quant/model_int8.tflite"
TEMPLATES = Path(__file__).parent / "templates"
PREPROCESS_FILE = "pizza_preprocess.py"
PREPROCESS_HEADER = f'''"""The model's input preprocessing ({preprocess.NAME}), generated from edgecore/preprocess.py.

Needs only numpy. After PIL convert("RGB") and resize((width, height), BILINEAR): a float model takes
standardize(pixels) / 255 (float32), an INT8 model standardize(pixels) - 128 (int8). Pixels: uint8 [N, H, W, 3].
"""
import numpy as np

'''


def require(run_dir, *rel_paths: str) -> list[Path]:
    """Paths of the quantize stage's files, checked to be the bytes quantize recorded (and the dataset the bytes
    the data stage recorded), or a one-line error naming the stage to run."""
    run_dir = Path(run_dir)
    quantize = f"python -m compress quantize --run {run_dir}"
    out = []
    for rel in rel_paths:
        p = run_dir / rel
        if not p.is_file():
            raise UserError(f"{p} not found: run `{quantize}` first")
        out.append(p)
    verify_inputs(run_dir, "quant", out, quantize)
    verify_inputs(run_dir, "data", [run_dir / "data" / "dataset.json"], f"python -m compress data --run {run_dir}")
    return out


def check_outputs(scores: np.ndarray, classes, model_path) -> np.ndarray:
    """A model's scores, checked to have one column per class of the dataset it is evaluated and shipped with."""
    if scores.ndim != 2 or scores.shape[1] != len(classes):
        raise UserError(f"{model_path} has {scores.shape[-1]} outputs but the dataset has {len(classes)} classes: "
                        "re-run distill and quantize on this dataset")
    return scores


def load_onnx(path):
    """Load and validate an ONNX file; a corrupt file is the user's problem, not a traceback."""
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # onnx raises DecodeError, ValidationError, ... for bad files
        raise UserError(f"{path} is not a valid ONNX model: {str(e).splitlines()[0]}") from None
    return model


def nchw_input(model) -> tuple[str, int, int]:
    """(input name, H, W) of a float NCHW image model."""
    inp = model.graph.input[0]
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[1] != 3 or not dims[2] or not dims[3]:
        raise UserError(f"expected one NCHW float image input [N,3,H,W], got {inp.name} {dims}")
    return inp.name, dims[2], dims[3]


def ends_in_softmax(model) -> bool:
    return model.graph.node[-1].op_type == "Softmax"


def eval_split(run_dir, split: str, size: tuple[int, int], limit: int | None = None, seed: int = 0):
    """(uint8 NHWC images, int labels, class names) of one split, preprocessed as in CONTRACT.md;
    `limit` draws a seeded subset (calibration)."""
    ds = load_dataset(run_dir)
    items = ds.split(split)
    if limit and limit < len(items):
        keep = np.random.default_rng(seed).choice(len(items), limit, replace=False)
        items = [items[i] for i in sorted(keep)]
    if not items:
        raise UserError(f"the {split} split of {run_dir} is empty")
    x = load_images(run_dir, items, size)
    return x, ds.labels(items), list(ds.classes)


def ort_session(model, threads: int = 1, reference: bool = False):
    """onnxruntime CPU session from a path or a ModelProto. `reference` turns graph optimizations off, so Q/DQ
    nodes run as themselves around float ops (int8 rounding and clamping, exact products): the arithmetic of
    an int32-accumulating runtime such as TensorRT. Optimized, onnxruntime fuses DQ->Conv->Q into its x86
    int8 kernels, whose int16 pair sums saturate on AVX2 CPUs without VNNI."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if reference:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    src = str(model) if isinstance(model, (str, os.PathLike)) else model.SerializeToString()
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def ort_outputs(sess, x_nchw: np.ndarray) -> np.ndarray:
    """Run a session over all images, in one batch when the batch dim is free, else one by one."""
    inp = sess.get_inputs()[0]
    batch = inp.shape[0] if isinstance(inp.shape[0], int) else len(x_nchw)
    outs = [sess.run(None, {inp.name: x_nchw[i:i + batch]})[0] for i in range(0, len(x_nchw), batch)]
    return np.concatenate(outs).astype(np.float32)


def compare(pred: np.ndarray, ref_pred: np.ndarray, labels: np.ndarray) -> dict:
    """Top-1 agreement with the float student and accuracy against the labels."""
    return {"agreement": float(np.mean(pred == ref_pred)), "accuracy": float(np.mean(pred == labels))}


def metrics_table(metrics: dict) -> str:
    """Markdown table of what the export measured, for the target's README."""
    rows = "\n".join(f"| {k} | {v} |" for k, v in metrics.items())
    return f"| metric | value |\n|---|---|\n{rows}\n"


def median_ms(fn: Callable[[], object], warmup: int = 5, runs: int = 50) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return round(statistics.median(times), 4)


def host_note() -> str:
    import platform

    return f"measured on this build host ({platform.machine()}, {os.cpu_count()} CPUs), not on the device"


def model_json(classes, size, *, layout: str, input_dtype: str, output: str, extra: dict | None = None) -> dict:
    """The sidecar every runner reads instead of hard-coding classes and preprocessing."""
    h, w = size
    return {
        "classes": list(classes),
        "input": {"height": h, "width": w, "channels": 3, "layout": layout, "dtype": input_dtype,
                  "preprocessing": "PIL convert('RGB'), resize((width, height), BILINEAR), "
                                   + (preprocess.FLOAT_FORMULA if input_dtype == "float32" else preprocess.INT8_FORMULA)
                                   + f" ({PREPROCESS_FILE})",
                  "standardize": {"name": preprocess.NAME, "definition": preprocess.DESCRIPTION}},
        "output": output,
        **(extra or {}),
    }


@contextlib.contextmanager
def staging(out_dir) -> Iterator[Path]:
    """Build a target's folder beside it and swap it in whole, so a failed export leaves the old one intact."""
    out_dir = Path(out_dir)
    ensure_dir(out_dir.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    tmp.chmod(0o755)
    try:
        yield tmp
        old = out_dir.with_name(f".{out_dir.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_docs(folder, readme: str, sidecar: dict) -> None:
    """README (how to run it on the device), model.json (classes + preprocessing) and the preprocessing itself as a
    numpy-only module beside the artifacts."""
    write_text_atomic(Path(folder) / "README.md", readme)
    write_json_atomic(Path(folder) / "model.json", sidecar)
    write_text_atomic(Path(folder) / PREPROCESS_FILE, PREPROCESS_HEADER + preprocess.source())


def record(run_dir, target: str, out_dir, *, inputs, params: dict, metrics: dict) -> dict:
    """Record R/export/<target>/manifest.json and return the metrics prefixed by the target's name."""
    prefixed = {f"{target.replace('-', '_')}_{k}": v for k, v in metrics.items()}
    outputs = sorted(p for p in Path(out_dir).rglob("*") if p.is_file() and p.name != "manifest.json")
    record_stage(run_dir, f"export/{target}", inputs=inputs, outputs=outputs, params=params, metrics=prefixed,
                 seed=params.get("seed"))
    return prefixed

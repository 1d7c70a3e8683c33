"""Raspberry Pi 4 exporter: the per-channel INT8 QDQ ONNX for onnxruntime on ARM64 plus a one-file runner."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from . import qdq
from .targets_common import (FLOAT_ONNX, QDQ_ONNX, TEMPLATES, check_outputs, compare, ends_in_softmax, eval_split,
                             host_note, load_onnx, median_ms, metrics_table, model_json, nchw_input, ort_outputs,
                             ort_session, record, require, staging, write_docs)
from edgecore.preprocess import to_float_nchw

MODEL_FILE = "model_int8_qdq.onnx"


def export(run_dir, out_dir, *, target: str = "rpi4", seed: int = 0, threads: int = 1, runs: int = 50,
           **_) -> dict:
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    float_path, qdq_path = require(run_dir, FLOAT_ONNX, QDQ_ONNX)
    float_model, int8_model = load_onnx(float_path), load_onnx(qdq_path)
    input_name, h, w = nchw_input(float_model)
    report = qdq.inspect_qdq(int8_model)

    x, y, classes = eval_split(run_dir, "test", (h, w))
    xf = to_float_nchw(x)
    ref = check_outputs(ort_outputs(ort_session(float_model, threads), xf), classes, float_path).argmax(1)
    sess = ort_session(qdq_path, threads)
    pred = check_outputs(ort_outputs(sess, xf), classes, qdq_path).argmax(1)
    one = {sess.get_inputs()[0].name: xf[:1]}
    metrics = {"float_accuracy": float(np.mean(ref == y)), "test_images": int(len(y)),
               **{f"int8_{k}": v for k, v in compare(pred, ref, y).items()},
               "qdq_compute_nodes": report["compute_nodes"], "qdq_per_channel": report["per_channel"],
               "host_latency_ms": median_ms(lambda: sess.run(None, one), runs=runs),
               "pi4_latency_ms": "not run: no Raspberry Pi 4 here; run run_rpi4.py on the Pi"}

    with staging(out_dir) as tmp:
        shutil.copy2(qdq_path, tmp / MODEL_FILE)
        shutil.copy2(TEMPLATES / "run_rpi4.py", tmp / "run_rpi4.py")
        sidecar = model_json(classes, (h, w), layout="NCHW", input_dtype="float32",
                             output="probabilities" if ends_in_softmax(int8_model) else "logits",
                             extra={"model": MODEL_FILE, "input_name": input_name})
        write_docs(tmp, _readme(metrics, threads), sidecar)
    params = {"seed": seed, "threads": threads, "runs": runs}
    return record(run_dir, target, out_dir, inputs=[float_path, qdq_path], params=params, metrics=metrics)


def _readme(metrics: dict, threads: int) -> str:
    return f"""# Raspberry Pi 4: INT8 ONNX (onnxruntime, ARM64)

`{MODEL_FILE}` is the student quantized to INT8 with QuantizeLinear/DequantizeLinear pairs and
per-channel weights; onnxruntime fuses them into integer kernels on ARM64. `model.json` holds the class
names and the preprocessing (RGB, bilinear resize, standardize(pixel) / 255, NCHW float32), whose code
`run_rpi4.py` imports from `pizza_preprocess.py`.

## On the Pi (64-bit Raspberry Pi OS, Python 3.9+)

```sh
python3 -m venv ~/pizza && ~/pizza/bin/pip install onnxruntime numpy pillow
~/pizza/bin/python run_rpi4.py photo.jpg            # class, probabilities, median latency
~/pizza/bin/python run_rpi4.py photo.jpg --runs 200 --threads 4 --json
```

`run_rpi4.py` needs only those three packages and the files beside it (`model.json`, `pizza_preprocess.py`, the model).

## Checked on the build host

onnxruntime CPU, {threads} thread(s), test split, compared with the float student ({host_note()}):

{metrics_table(metrics)}"""

"""Edge TPU exporter: the full-INT8 .tflite checked against the Edge TPU's rules, compiled with
`edgetpu_compiler` when it is on PATH, and its accuracy checked in tf.lite here."""
from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np

from edgecore.errors import UserError
from edgecore.tflite_graph import read_flatbuffer

from .targets_common import (FLOAT_ONNX, INT8_TFLITE, check_outputs, compare, eval_split, host_note, load_onnx,
                             median_ms, metrics_table, model_json, ort_outputs, ort_session, record, require, staging,
                             write_docs)
from edgecore.preprocess import to_float_nchw, to_float_nhwc

MODEL_FILE = "model_int8.tflite"
COMPILER_NOT_INSTALLED = "not run: edgetpu_compiler not installed"
# TFLite builtin -> limitation to check, from the Edge TPU supported-operations table
# (coral.ai/docs/edgetpu/models-intro). Ops outside it fall back to the CPU.
EDGETPU_OPS = {
    "ADD": "", "AVERAGE_POOL_2D": "no fused activation", "CONCATENATION": "no fused activation",
    "CONV_2D": "same dilation in x and y", "DEPTHWISE_CONV_2D": "same dilation in x and y", "EXPAND_DIMS": "",
    "FULLY_CONNECTED": "default weights format only", "L2_NORMALIZATION": "", "LOGISTIC": "",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "unidirectional only", "LSTM": "unidirectional only", "MAXIMUM": "",
    "MAX_POOL_2D": "no fused activation", "MEAN": "no batch-dim reduction; z-reduction needs depth % 4 == 0",
    "MINIMUM": "", "MUL": "", "PACK": "not in batch dim", "PAD": "not in batch dim", "PRELU": "1-D alpha",
    "QUANTIZE": "", "REDUCE_MAX": "not on batch dim", "REDUCE_MIN": "not on batch dim", "RELU": "", "RELU6": "",
    "RELU_N1_TO_1": "", "RESHAPE": "large tensors may stay on CPU", "RESIZE_BILINEAR": "3-D input/output",
    "RESIZE_NEAREST_NEIGHBOR": "3-D input/output", "RSQRT": "", "SLICE": "", "SOFTMAX": "1-D, <= 16,000 elements",
    "SPACE_TO_DEPTH": "", "SPLIT": "not in batch dim", "SQUEEZE": "", "STRIDED_SLICE": "", "SUB": "", "SUM": "",
    "SQUARED_DIFFERENCE": "", "TANH": "", "TRANSPOSE": "", "TRANSPOSE_CONV": "",
}


def _interpreter(model_path, threads: int = 1, delegates: bool = True, allocate: bool = True):
    import tensorflow as tf
    from tensorflow.lite.python.interpreter import OpResolverType

    kind = OpResolverType.AUTO if delegates else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice, once per process anyway
        warnings.simplefilter("ignore")
        try:
            it = tf.lite.Interpreter(model_path=str(model_path), num_threads=threads,
                                     experimental_op_resolver_type=kind)
        except ValueError as e:
            raise UserError(f"{model_path} is not a valid .tflite model: {str(e).splitlines()[0]}") from None
    if allocate:
        it.allocate_tensors()
    return it


def _op_check(op, tensors) -> str:
    """'' when the op meets the Edge TPU's rules we can check from the file, else why not."""
    name = op["op_name"]
    if name not in EDGETPU_OPS:
        return "not in the Edge TPU supported-op list (runs on CPU)"
    if name == "MEAN" and tensors[op["inputs"][1]]["value"] is not None:
        axes = tensors[op["inputs"][1]]["value"]
        rank = len(tensors[op["inputs"][0]]["shape"])
        depth = tensors[op["inputs"][0]]["shape"][-1]
        if 0 in axes:
            return "reduces the batch dimension"
        if (rank - 1) in axes and depth % 4:
            return f"z-reduction over depth {depth}, not a multiple of 4"
    if name == "SOFTMAX" and int(np.prod(tensors[op["inputs"][0]]["shape"])) > 16000:
        return "more than 16,000 elements"
    return ""


def check_rules(model_path) -> dict:
    """Static shapes, one subgraph, int8 tensors, and each op against the Edge TPU supported-op list."""
    buf = Path(model_path).read_bytes()
    if buf[4:8] != b"TFL3":
        raise UserError(f"{model_path} is not a .tflite model (no TFL3 identifier)")
    # A full decode first: TF's interpreter can crash the process on a truncated flatbuffer.
    subgraphs = len(read_flatbuffer(buf, str(model_path)).subgraphs or [])
    it = _interpreter(model_path, delegates=False, allocate=False)
    problems = []
    try:
        it.allocate_tensors()
    except RuntimeError as e:  # e.g. dynamic shapes; the checks below still name the cause
        problems.append(f"tf.lite cannot allocate the model: {str(e).splitlines()[0]}")
    tensors = {}
    for t in it.get_tensor_details():
        try:
            value = it.get_tensor(t["index"])
        except ValueError:  # intermediate tensors have no data before invoke
            value = None
        tensors[t["index"]] = {**t, "value": value}
    if subgraphs != 1:
        problems.append(f"{subgraphs} subgraphs (Edge TPU compiles one)")
    for t in tensors.values():
        if any(d < 0 for d in t["shape_signature"]):
            problems.append(f"tensor {t['name']}: dynamic shape {list(t['shape_signature'])}")
        if t["dtype"] not in (np.int8, np.uint8, np.int32):
            problems.append(f"tensor {t['name']}: {np.dtype(t['dtype']).name} (Edge TPU needs 8-bit quantized)")
    for d in it.get_input_details() + it.get_output_details():
        if d["dtype"] != np.int8:
            problems.append(f"model input/output {d['name']} is {np.dtype(d['dtype']).name}, not int8")
    ops = []
    for op in it._get_ops_details():
        why = _op_check(op, tensors)
        ops.append({"op": op["op_name"], "edgetpu_supported": not why, "note": why or EDGETPU_OPS[op["op_name"]]})
        if why:
            problems.append(f"op {op['index']} {op['op_name']}: {why}")
    return {"ops": ops, "problems": problems}


def parse_compiler_output(text: str) -> dict:
    """Op counts from edgetpu_compiler's summary table ('Operator  Count  Status' rows)."""
    rows = re.findall(r"^([A-Z][A-Z0-9_]+)\s+(\d+)\s+(\S.*?)\s*$", text, flags=re.MULTILINE)
    on_tpu = sum(int(n) for _, n, status in rows if status == "Mapped to Edge TPU")
    total = re.search(r"Total number of operations:\s*(\d+)", text)
    total = int(total.group(1)) if total else sum(int(n) for _, n, _ in rows)
    return {"ops_total": total, "ops_on_edgetpu": on_tpu, "ops_on_cpu": total - on_tpu,
            "table": [{"op": op, "count": int(n), "status": status} for op, n, status in rows]}


def compile_for_edgetpu(model_path, out_dir) -> dict:
    """Run edgetpu_compiler into out_dir; the report says 'not run' when the compiler is absent."""
    exe = shutil.which("edgetpu_compiler")
    if exe is None:
        return {"status": COMPILER_NOT_INSTALLED}
    res = subprocess.run([exe, "-s", "-o", str(out_dir), str(model_path)], capture_output=True, text=True)
    if res.returncode != 0:
        last = (res.stderr or res.stdout).strip().splitlines()
        return {"status": f"failed: {last[-1] if last else 'exit ' + str(res.returncode)}"}
    return {"status": "compiled", **parse_compiler_output(res.stdout)}


def _int8_input(x_uint8: np.ndarray, detail) -> np.ndarray:
    scale, zp = detail["quantization"]
    q = np.round(to_float_nhwc(x_uint8) / scale + zp)
    return np.clip(q, -128, 127).astype(np.int8)


def tflite_predict(it, x_uint8: np.ndarray) -> np.ndarray:
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    xq = _int8_input(x_uint8, inp)
    preds = []
    for i in range(len(xq)):
        it.set_tensor(inp["index"], xq[i:i + 1])
        it.invoke()
        preds.append(int(np.argmax(it.get_tensor(out["index"])[0])))
    return np.array(preds)


def export(run_dir, out_dir, *, target: str = "edgetpu", seed: int = 0, threads: int = 1, runs: int = 50,
           **_) -> dict:
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    float_path, tflite_path = require(run_dir, FLOAT_ONNX, INT8_TFLITE)
    rules = check_rules(tflite_path)
    it = _interpreter(tflite_path, threads)
    _, h, w, _ = it.get_input_details()[0]["shape"]

    x, y, classes = eval_split(run_dir, "test", (int(h), int(w)))
    ref = check_outputs(ort_outputs(ort_session(load_onnx(float_path), threads), to_float_nchw(x)), classes,
                        float_path).argmax(1)
    check_outputs(np.zeros(it.get_output_details()[0]["shape"]), classes, tflite_path)
    pred = tflite_predict(it, x)
    inp = it.get_input_details()[0]
    it.set_tensor(inp["index"], _int8_input(x[:1], inp))
    metrics = {"float_accuracy": float(np.mean(ref == y)), "test_images": int(len(y)),
               **{f"int8_tflite_{k}": v for k, v in compare(pred, ref, y).items()},
               "rule_problems": len(rules["problems"]),
               "ops_checked": len(rules["ops"]),
               "ops_in_supported_list": sum(o["edgetpu_supported"] for o in rules["ops"]),
               "host_tflite_latency_ms": median_ms(it.invoke, runs=runs)}

    with staging(out_dir) as tmp:
        shutil.copy2(tflite_path, tmp / MODEL_FILE)
        compiled = compile_for_edgetpu(tmp / MODEL_FILE, tmp)
        metrics["compiler"] = compiled["status"]
        metrics.update({k: compiled.get(k, compiled["status"]) for k in ("ops_on_edgetpu", "ops_on_cpu")})
        metrics["device_latency_ms"] = "not run: no Edge TPU here"
        sidecar = model_json(classes, (int(h), int(w)), layout="NHWC", input_dtype="int8", output="int8 softmax",
                             extra={"model": MODEL_FILE, "edgetpu_ops": rules["ops"],
                                    "edgetpu_rule_problems": rules["problems"],
                                    "edgetpu_compiler": compiled})
        write_docs(tmp, _readme(metrics, rules, threads), sidecar)
    params = {"seed": seed, "threads": threads, "runs": runs}
    return record(run_dir, target, out_dir, inputs=[float_path, tflite_path], params=params, metrics=metrics)


def _readme(metrics: dict, rules: dict, threads: int) -> str:
    ops = "\n".join(f"| {o['op']} | {'yes' if o['edgetpu_supported'] else 'NO'} | {o['note']} |"
                    for o in rules["ops"])
    problems = "\n".join(f"- {p}" for p in rules["problems"]) or "none found"
    return f"""# Coral Edge TPU: full-INT8 TFLite

`{MODEL_FILE}`: int8 input (standardize(pixel) - 128, NHWC; `pizza_preprocess.py`), int8 softmax output, static shapes, one subgraph.
The Edge TPU only accepts such a model after `edgetpu_compiler` maps its ops to the TPU.

## Compile (x86-64 Debian/Ubuntu, Coral apt repository)

```sh
sudo apt-get install edgetpu-compiler
edgetpu_compiler -s {MODEL_FILE}        # writes model_int8_edgetpu.tflite + .log
```

## Run (Coral USB / Dev Board, `pycoral` + `libedgetpu1-std`)

```python
from pycoral.utils.edgetpu import make_interpreter
from PIL import Image
import json, numpy as np
from pizza_preprocess import standardize
meta = json.load(open("model.json"))
it = make_interpreter("model_int8_edgetpu.tflite"); it.allocate_tensors()
img = Image.open("photo.jpg").convert("RGB").resize((meta["input"]["width"], meta["input"]["height"]), Image.BILINEAR)
it.set_tensor(it.get_input_details()[0]["index"], (standardize(np.asarray(img)[None]).astype(np.int16) - 128).astype(np.int8))
it.invoke()
print(meta["classes"][int(np.argmax(it.get_tensor(it.get_output_details()[0]["index"])[0]))])
```

## Op check against the Edge TPU supported-op list

| op | on the list | limitation |
|---|---|---|
{ops}

Problems: {problems}

## Checked on the build host (tf.lite, {threads} thread(s); {host_note()})

{metrics_table(metrics)}"""

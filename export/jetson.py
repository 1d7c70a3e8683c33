"""Jetson exporter: static batch-1 ONNX for TensorRT, FP16 for the Jetson Nano (Maxwell has no fast INT8)
and explicit Q/DQ INT8 for Orin; the same graphs are checked here through onnxruntime."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx

from edgecore.io import write_bytes_atomic

from . import qdq, trt_engine
from .targets_common import (FLOAT_ONNX, QDQ_ONNX, check_outputs, compare, eval_split, host_note, load_onnx,
                             metrics_table, model_json, nchw_input, ort_outputs, ort_session, record, require, staging,
                             write_docs)
from edgecore.preprocess import to_float_nchw

MODEL_FILE = {"fp16": "model_fp32_b1.onnx", "int8": "model_int8_qdq_b1.onnx"}


def static_batch1(model):
    """Pin the batch dim to 1: TensorRT then builds one fixed-shape engine without optimisation profiles."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for v in list(m.graph.input) + list(m.graph.output):
        v.type.tensor_type.shape.dim[0].dim_value = 1
    del m.graph.value_info[:]
    m = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    onnx.checker.check_model(m, full_check=True)
    return m


def to_fp16(model):
    """What TensorRT's FP16 flag does to weights and activations, for an accuracy check in onnxruntime."""
    from onnxconverter_common import float16

    return float16.convert_float_to_float16(model, keep_io_types=True)


def _tensorrt_qdq(run_dir, qdq_path, float_b1, input_name, size, calib, seed):
    """The run's QDQ model if it follows TensorRT's Q/DQ rules and placement, else a TensorRT-style
    re-quantization of the float ONNX."""
    given = load_onnx(qdq_path)
    report = qdq.inspect_qdq(given)
    if not report["problems"]:
        return static_batch1(given), "R/" + QDQ_ONNX, report
    x, _, _ = eval_split(run_dir, "train", size, limit=calib, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "qdq.onnx"
        onnx.save(float_b1, str(src))
        qdq.quantize_for_tensorrt(src, dst, input_name, to_float_nchw(x))
        model = load_onnx(dst)
    fixed = qdq.inspect_qdq(model)
    if fixed["problems"]:
        raise RuntimeError(f"re-quantized model still breaks TensorRT's Q/DQ rules: {fixed['problems'][0]}")
    why = f"re-quantized from the float ONNX for TensorRT ({len(report['problems'])} problems in " \
          f"R/{QDQ_ONNX}, first: {report['problems'][0]})"
    return model, why, fixed


def export(run_dir, out_dir, *, target: str = "jetson-orin-nano", precision: str = "int8", seed: int = 0,
           calib: int = 300, threads: int = 1, **_) -> dict:
    """`precision` (the target file's): fp16 ships the float graph for TensorRT's FP16 flag, int8 a Q/DQ graph."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    (float_path,) = require(run_dir, FLOAT_ONNX)
    inputs = [float_path] + (require(run_dir, QDQ_ONNX) if precision == "int8" else [])
    float_model = load_onnx(float_path)
    input_name, h, w = nchw_input(float_model)
    float_b1 = static_batch1(float_model)

    x, y, classes = eval_split(run_dir, "test", (h, w))
    xf = to_float_nchw(x)
    ref = check_outputs(ort_outputs(ort_session(float_model, threads), xf), classes, float_path).argmax(1)
    metrics = {"float_accuracy": float(np.mean(ref == y)), "test_images": int(len(y))}
    if precision == "fp16":
        shipped, source = float_b1, f"R/{FLOAT_ONNX} with batch pinned to 1"
        checked = to_fp16(float_b1)
    else:
        shipped, source, report = _tensorrt_qdq(run_dir, inputs[1], float_b1, input_name, (h, w), calib, seed)
        checked = shipped
        metrics["qdq_compute_nodes"] = report["compute_nodes"]
        metrics["qdq_per_channel"] = report["per_channel"]
    pred = check_outputs(ort_outputs(ort_session(checked, threads, reference=precision == "int8"), xf), classes,
                         inputs[-1]).argmax(1)
    metrics.update({f"{precision}_onnxruntime_{k}": v for k, v in compare(pred, ref, y).items()})
    metrics["tensorrt_latency_ms"] = trt_engine.status() or "measured after export (see below)"

    name = MODEL_FILE[precision]
    with staging(out_dir) as tmp:
        write_bytes_atomic(tmp / name, shipped.SerializeToString())
        shutil.copy2(Path(trt_engine.__file__), tmp / "trt_engine.py")
        sidecar = model_json(classes, (h, w), layout="NCHW", input_dtype="float32",
                             output="probabilities" if shipped.graph.node[-1].op_type == "Softmax" else "logits",
                             extra={"model": name, "precision": precision, "input_name": input_name,
                                    "source": source})
        write_docs(tmp, _readme(target, precision, name, source, metrics), sidecar)
    if not trt_engine.status():  # running on the Jetson itself: build and time the engine for real
        trt = trt_engine.measure(str(out_dir / name), precision)
        metrics["tensorrt_latency_ms"] = trt["latency_ms"]
        metrics["tensorrt_engine"] = trt["engine"]
    params = {"seed": seed, "calib": calib, "threads": threads, "precision": precision, "source": source}
    return record(run_dir, target, out_dir, inputs=inputs, params=params, metrics=metrics)


def _readme(target: str, precision: str, name: str, source: str, metrics: dict) -> str:
    jetpack = ("JetPack 4.6.x (TensorRT 8.2, Python 3.6): the Nano's last JetPack" if target == "jetson-nano"
               else "JetPack 6.x (TensorRT 10) or JetPack 5.x (TensorRT 8.5+)")
    why = ("The Jetson Nano's Maxwell GPU has no fast INT8 path, so the engine is built in FP16 from this "
           "float ONNX (TensorRT's FP16 flag converts the weights)." if precision == "fp16" else
           "Orin runs INT8 from the explicit Q/DQ nodes in this ONNX: symmetric int8 (zero point 0) on the input "
           "and weights (per output channel) of each Conv and Gemm, float bias, nothing between a Conv and its "
           "Clip (TensorRT fuses Conv+BN+ReLU6 and requantizes into the next layer's Q), float logits and "
           "softmax. No calibrator: implicit calibration is deprecated since TensorRT 10.1.")
    return f"""# {target}: TensorRT {precision.upper()}

`{name}` — {source}. Batch is fixed to 1 so TensorRT builds one static-shape engine.
{why}

## On the Jetson ({jetpack})

Copy this folder to the device, then:

```sh
python3 trt_engine.py {name} --precision {precision}
```

It builds the engine once and caches it next to the ONNX as
`{Path(name).stem}.{precision}.trt<version>.<gpu>.engine` (an engine only runs on the GPU and TensorRT
version that built it), then prints the median latency of `--runs` inferences after `--warmup`.
It uses the TensorRT Python API with cuda-python or pycuda; if only `trtexec` is installed it calls
`trtexec --onnx={name} --saveEngine=... --fp16{' --int8' if precision == 'int8' else ''}` instead.
`python -m benchmarks.run --target {target}` on the Jetson does the same through the harness.

Inputs: float32 NCHW `[1, 3, H, W]`, standardize(pixel) / 255 after a bilinear resize (`standardize` is in
`pizza_preprocess.py`; see `model.json`).

## Checked on the build host (onnxruntime, no TensorRT)

The same graph, {"converted to FP16 with onnxconverter-common" if precision == "fp16" else
                  "its Q/DQ nodes run as reference ops (onnxruntime graph optimizations off: int8 rounding and "
                  "exact products, as TensorRT's int32 accumulators compute; onnxruntime's fused x86 int8 "
                  "kernels saturate on CPUs without VNNI and would measure the host, not the Orin)"},
compared with the float student on the test split ({host_note()}):

{metrics_table(metrics)}"""

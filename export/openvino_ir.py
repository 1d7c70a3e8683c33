"""OpenVINO exporter: FP32 IR from the float ONNX and an INT8 IR from NNCF post-training quantization on the
train split, both measured with OpenVINO's CPU plugin."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .targets_common import (FLOAT_ONNX, check_outputs, compare, ends_in_softmax, eval_split, host_note, load_onnx,
                             median_ms, metrics_table, model_json, nchw_input, ort_outputs, ort_session, record,
                             require, staging, write_docs)
from edgecore.preprocess import to_float_nchw


def _compile(core, xml: Path, threads: int):
    # f32 hint: measure the IR's own precision, not a bf16/fp16 downcast some CPUs would pick by default
    return core.compile_model(core.read_model(str(xml)), "CPU",
                              {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})


def _predict(compiled, xf: np.ndarray) -> np.ndarray:
    req = compiled.create_infer_request()
    return np.array([int(np.argmax(req.infer({0: xf[i:i + 1]})[0])) for i in range(len(xf))])


def quantize_int8(model, calib_nchw: np.ndarray):
    """NNCF post-training INT8 (min-max ranges + bias correction) for the CPU plugin."""
    import nncf

    data = nncf.Dataset([calib_nchw[i:i + 1] for i in range(len(calib_nchw))])
    return nncf.quantize(model, data, subset_size=len(calib_nchw), target_device=nncf.TargetDevice.CPU)


def export(run_dir, out_dir, *, target: str = "openvino", seed: int = 0, calib: int = 300, threads: int = 1,
           runs: int = 50, **_) -> dict:
    import openvino as ov

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    (float_path,) = require(run_dir, FLOAT_ONNX)
    float_model = load_onnx(float_path)
    input_name, h, w = nchw_input(float_model)
    x, y, classes = eval_split(run_dir, "test", (h, w))
    xf = to_float_nchw(x)
    ref = check_outputs(ort_outputs(ort_session(float_model, threads), xf), classes, float_path).argmax(1)
    calib_x = to_float_nchw(eval_split(run_dir, "train", (h, w), limit=calib, seed=seed)[0])

    core = ov.Core()
    metrics = {"float_accuracy": float(np.mean(ref == y)), "test_images": int(len(y)),
               "calibration_images": int(len(calib_x))}
    with staging(out_dir) as tmp:
        fp32 = ov.convert_model(str(float_path))
        ov.save_model(fp32, str(tmp / "model_fp32.xml"), compress_to_fp16=False)
        ov.save_model(quantize_int8(fp32, calib_x), str(tmp / "model_int8.xml"), compress_to_fp16=False)
        for kind in ("fp32", "int8"):
            compiled = _compile(core, tmp / f"model_{kind}.xml", threads)
            metrics.update({f"{kind}_{k}": v for k, v in compare(_predict(compiled, xf), ref, y).items()})
            req = compiled.create_infer_request()
            metrics[f"{kind}_cpu_latency_ms"] = median_ms(lambda: req.infer({0: xf[:1]}), runs=runs)
        sidecar = model_json(classes, (h, w), layout="NCHW", input_dtype="float32",
                             output="probabilities" if ends_in_softmax(float_model) else "logits",
                             extra={"models": {"fp32": "model_fp32.xml", "int8": "model_int8.xml"},
                                    "input_name": input_name})
        write_docs(tmp, _readme(metrics, threads, h, w), sidecar)
    params = {"seed": seed, "calib": calib, "threads": threads, "runs": runs, "openvino": ov.__version__}
    return record(run_dir, target, out_dir, inputs=[float_path], params=params, metrics=metrics)


def _readme(metrics: dict, threads: int, h: int, w: int) -> str:
    return f"""# OpenVINO: IR FP32 and INT8 (NNCF)

- `model_fp32.xml/.bin`: the float student converted with `openvino.convert_model`.
- `model_int8.xml/.bin`: NNCF post-training INT8 quantization calibrated on the train split.

Input: float32 NCHW `[N, 3, H, W]`, standardize(pixel) / 255 after a bilinear resize (`standardize` is in
`pizza_preprocess.py`; see `model.json`).

## Run (any OpenVINO 2024+ machine: x86 CPU, Intel GPU/NPU)

```sh
pip install openvino pillow
benchmark_app -m model_int8.xml -d CPU -shape "[1,3,{h},{w}]" -hint latency
```

```python
import json, numpy as np, openvino as ov
from PIL import Image
from pizza_preprocess import standardize
meta = json.load(open("model.json")); s = meta["input"]
img = Image.open("photo.jpg").convert("RGB").resize((s["width"], s["height"]), Image.BILINEAR)
x = (standardize(np.asarray(img)[None]).astype(np.float32) / 255.0).transpose(0, 3, 1, 2)
m = ov.Core().compile_model("model_int8.xml", "CPU")
print(meta["classes"][int(np.argmax(m(x)[0]))])
```

## Measured on the build host (OpenVINO CPU plugin, {threads} thread(s); {host_note()})

{metrics_table(metrics)}"""

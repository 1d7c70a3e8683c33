"""ONNX targets: onnxruntime on the CPU (rpi4, host) and TensorRT on a Jetson (checked via onnxruntime here)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecore.preprocess import to_float_nchw
from export import trt_engine
from export.jetson import to_fp16
from export.targets_common import load_onnx, nchw_input, ort_outputs, ort_session

from . import opcheck
from .artifacts import export_dir, sidecar
from .context import QDQ_ONNX, Context, Deployed, drop_row, timing_rows
from .results import Point, Result, check, info, measured, not_run


def ops_gate(ctx: Context, result: Result, model: Path) -> bool:
    """Every graph op must be in the target's allowed list; False stops the run before anything executes."""
    allowed = ctx.spec.ops.get("allowed")
    if not allowed:
        return True
    ops = opcheck.onnx_inventory(model)
    bad = opcheck.unsupported(ops, allowed)
    note = (f"unsupported: {', '.join(bad)}" if bad else f"all {sum(ops.values())} nodes supported") + \
        f" ({opcheck.describe(ops)})"
    result.rows.append(check(f"ONNX ops vs targets/{ctx.spec.name}.toml", not bad, note))
    return not bad


def _accuracy(ctx: Context, model, runtime: str, reference: bool = False) -> tuple[float, np.ndarray, int]:
    """Test accuracy through onnxruntime; the session becomes ctx.deployed for the shift suite and --eval-data."""
    proto = load_onnx(model) if isinstance(model, Path) else model
    _, h, w = nchw_input(proto)
    x, y, _ = ctx.test_set((h, w))
    sess = ort_session(proto, reference=reference)
    predict = lambda imgs: ort_outputs(sess, to_float_nchw(imgs)).argmax(1)  # noqa: E731
    ctx.deployed = Deployed(runtime, (h, w), predict, predict(x))
    return 100.0 * float(np.mean(ctx.deployed.test_pred == y)), to_float_nchw(x[:1]), len(y)


def measure_onnxruntime(ctx: Context, result: Result) -> None:
    model = ctx.quant_file(QDQ_ONNX)
    if not ops_gate(ctx, result, model):
        return
    float_acc = ctx.float_baseline(result)
    size = model.stat().st_size
    result.rows.append(measured("model_bytes", "INT8 QDQ ONNX file", size, "B", str(model)))
    acc, x1, n = _accuracy(ctx, model, "onnxruntime CPU, QDQ")
    result.rows += [measured("accuracy_pct", f"INT8 accuracy (onnxruntime CPU, QDQ), {ctx.test_name(n)}",
                             round(acc, 4), "%"),
                    drop_row("INT8 drop vs float", float_acc, acc)]
    result.points.append(Point("int8", "onnxruntime QDQ", size, acc))
    timing_rows(ctx, result, "onnxruntime", model, x1, "onnxruntime INT8 QDQ")


def measure_tensorrt(ctx: Context, result: Result) -> None:
    folder = export_dir(ctx.run_dir, ctx.spec)
    meta = sidecar(folder)
    model = folder / meta["model"]
    if not ops_gate(ctx, result, model):
        return
    float_acc = ctx.float_baseline(result)
    precision = ctx.spec.precision
    size = model.stat().st_size
    result.rows.append(measured("model_bytes", f"ONNX handed to TensorRT ({model.name})", size, "B",
                                "the engine is built from it on the device"))
    if precision == "fp16":
        checked, how = to_fp16(load_onnx(model)), "onnxruntime, weights+activations cast to FP16"
    else:
        checked, how = model, "onnxruntime CPU, same Q/DQ graph, unfused like TensorRT's int32 sums"
    # Unfused: onnxruntime's fused x86 int8 kernels saturate int16 pair sums (no VNNI); TensorRT does not.
    acc, _, n = _accuracy(ctx, checked, f"onnxruntime, {precision.upper()} graph", reference=precision == "int8")
    result.rows += [measured("accuracy_pct", f"{precision.upper()} accuracy ({how}), {ctx.test_name(n)}",
                             round(acc, 4), "%", "TensorRT kernels may differ slightly from onnxruntime's"),
                    drop_row(f"{precision.upper()} drop vs float", float_acc, acc)]
    graph_bytes = len(checked.SerializeToString()) if precision == "fp16" else size  # FP16 weights: half the bytes
    result.points.append(Point(precision, f"onnxruntime ({precision} graph)", graph_bytes, acc))
    reason = trt_engine.status()
    if reason:
        why = reason.removeprefix("not run: ")
        result.rows += [not_run("latency_ms", "TensorRT latency", why),
                        not_run("ram_bytes", "TensorRT peak RAM", why),
                        not_run("accuracy_pct", "TensorRT accuracy", why)]
        return
    trt = trt_engine.measure(str(model), precision)
    engine_bytes = Path(trt["engine"]).stat().st_size
    result.rows.append(info(f"TensorRT {precision} engine", engine_bytes, "B", trt["engine"]))
    if isinstance(trt["latency_ms"], str):
        result.rows.append(not_run("latency_ms", "TensorRT latency", trt["latency_ms"].removeprefix("not run: ")))
    else:
        result.rows.append(measured("latency_ms", f"TensorRT latency ({trt.get('gpu', 'GPU')})",
                                    round(trt["latency_ms"], 4), "ms", "median, H2D + execute + D2H, batch 1"))
    result.rows += [not_run("ram_bytes", "TensorRT peak RAM", "not measured by export/trt_engine.py"),
                    not_run("accuracy_pct", "TensorRT accuracy", "export/trt_engine.py times random inputs only")]


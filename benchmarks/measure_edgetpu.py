"""Edge TPU target: op and type constraints on the full-INT8 .tflite, accuracy of that int8 graph on the
TFLite reference kernels, and the compiled model / latency only where edgetpu_compiler / a Coral exist."""
from __future__ import annotations

import ctypes.util

import numpy as np

from edgecore import preprocess
from edgecore.interpreters import tflite_ref_invoke
from edgecore.tflite_graph import describe_model
from export.edgetpu import check_rules
from export.targets_common import median_ms

from . import opcheck
from .artifacts import export_dir, sidecar
from .context import Context, Deployed, drop_row
from .results import Point, Result, check, measured, not_run


def tflite_accuracy(ctx: Context, path) -> tuple[float, int]:
    """Top-1 accuracy (%) and image count of a full-int8 .tflite on TFLite's reference kernels (int8 NHWC,
    standardize(pixel) - 128); the interpreter becomes ctx.deployed for the shift suite and --eval-data."""
    data = path.read_bytes()
    _, h, w, _ = describe_model(data)["inputs"][0]["shape"]
    x, y, _ = ctx.test_set((h, w))
    predict = lambda imgs: tflite_ref_invoke(data, preprocess.to_int8(imgs)).argmax(1)  # noqa: E731
    ctx.deployed = Deployed("TFLite reference kernels", (h, w), predict, predict(x))
    return 100.0 * float(np.mean(ctx.deployed.test_pred == y)), len(y)


def _gate(ctx: Context, result: Result, model) -> bool:
    """The spec's op list and 8-bit rule, then the exporter's finer Edge TPU rules (MEAN depth, shapes...)."""
    ops, wide = opcheck.tflite_inventory(model)
    bad = opcheck.unsupported(ops, ctx.spec.ops.get("allowed", ops))
    note = (f"unsupported: {', '.join(bad)}" if bad else f"all {sum(ops.values())} ops supported") + \
        f" ({opcheck.describe(ops)})"
    result.rows.append(check(f"TFLite ops vs targets/{ctx.spec.name}.toml", not bad, note))
    if ctx.spec.ops.get("int8_only"):
        result.rows.append(check("every tensor 8-bit (int32 bias allowed)", not wide,
                                 f"not 8-bit: {', '.join(wide[:5])}" if wide else "all tensors int8/uint8/int32"))
    problems = check_rules(model)["problems"]
    result.rows.append(check("Edge TPU op constraints (export/edgetpu.py rules)", not problems,
                             "; ".join(problems[:3]) if problems else "none broken"))
    return not bad and not (ctx.spec.ops.get("int8_only") and wide) and not problems


def measure_edgetpu(ctx: Context, result: Result) -> None:
    folder = export_dir(ctx.run_dir, ctx.spec)
    meta = sidecar(folder)
    model = folder / meta["model"]
    if not _gate(ctx, result, model):
        return
    float_acc = ctx.float_baseline(result)
    compiler = meta.get("edgetpu_compiler", {}).get("status", "not run: edgetpu_compiler not installed")
    compiled = sorted(folder.glob("*_edgetpu.tflite"))
    if compiler == "compiled" and compiled:
        c = meta["edgetpu_compiler"]
        result.rows += [measured("model_bytes", f"Edge TPU model ({compiled[0].name})", compiled[0].stat().st_size,
                                 "B"),
                        check("every op mapped to the Edge TPU", c["ops_on_cpu"] == 0,
                              f"{c['ops_on_edgetpu']} on the TPU, {c['ops_on_cpu']} on the CPU")]
    else:
        result.rows += [not_run("model_bytes", "compiled Edge TPU model", compiler.removeprefix("not run: ")),
                        measured("model_bytes", "full-INT8 .tflite (compiler input)", model.stat().st_size, "B",
                                 "the compiled model adds the TPU executable to this")]
    acc, n = tflite_accuracy(ctx, model)
    result.rows += [measured("accuracy_pct", f"INT8 accuracy (TFLite reference kernels, same int8 graph), "
                                             f"{ctx.test_name(n)}", round(acc, 4), "%",
                             "the Edge TPU executes this quantized graph"),
                    drop_row("INT8 drop vs float", float_acc, acc)]
    result.points.append(Point("int8", "TFLite int8", model.stat().st_size, acc))
    _on_tpu(ctx, result, compiled[0] if compiled else None)


def _on_tpu(ctx: Context, result: Result, compiled) -> None:
    """Latency and accuracy on a Coral, through the libedgetpu delegate, when one is attached here."""
    import tensorflow as tf

    if ctypes.util.find_library("edgetpu") is None:  # checked first: a failed load_delegate spams stderr
        result.rows.append(not_run("latency_ms", "Edge TPU latency", "libedgetpu (the Coral runtime) not installed"))
        return
    try:
        delegate = tf.lite.experimental.load_delegate("libedgetpu.so.1")
    except (ValueError, OSError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        result.rows.append(not_run("latency_ms", "Edge TPU latency", f"no Edge TPU runtime/device here ({reason})"))
        return
    if compiled is None:
        result.rows.append(not_run("latency_ms", "Edge TPU latency", "no compiled *_edgetpu.tflite to load"))
        return
    it = tf.lite.Interpreter(model_path=str(compiled), experimental_delegates=[delegate])
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    x, y, _ = ctx.test_set((int(inp["shape"][1]), int(inp["shape"][2])))
    pred = []
    for img in x:
        it.set_tensor(inp["index"], preprocess.to_int8(img[None]))
        it.invoke()
        pred.append(int(np.argmax(it.get_tensor(out["index"])[0])))
    acc = 100.0 * float(np.mean(np.array(pred) == y))
    result.rows += [measured("accuracy_pct", f"INT8 accuracy on the Edge TPU, {ctx.test_name(len(y))}", round(acc, 4),
                             "%"),
                    measured("latency_ms", "Edge TPU latency", median_ms(it.invoke, warmup=10, runs=100), "ms",
                             "median of 100 invokes after 10 warm-up, batch 1")]

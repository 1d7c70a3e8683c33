"""OpenVINO target: the exported INT8 IR, accuracy with OpenVINO Runtime on the CPU, timed when on x86."""
from __future__ import annotations

import numpy as np

from edgecore.preprocess import to_float_nchw, to_float_nhwc

from .artifacts import export_dir, sidecar
from .context import Context, Deployed, drop_row, timing_rows
from .results import Point, Result, measured


def _input(x_uint8: np.ndarray, meta: dict) -> np.ndarray:
    return to_float_nchw(x_uint8) if meta["input"]["layout"] == "NCHW" else to_float_nhwc(x_uint8)


def measure_openvino(ctx: Context, result: Result) -> None:
    import openvino as ov

    folder = export_dir(ctx.run_dir, ctx.spec)
    meta = sidecar(folder)
    precision = ctx.spec.precision
    xml = folder / (meta["models"][precision] if "models" in meta else meta["model"])
    size = xml.stat().st_size + xml.with_suffix(".bin").stat().st_size
    float_acc = ctx.float_baseline(result)
    result.rows.append(measured("model_bytes", "OpenVINO IR (.xml + .bin)", size, "B", str(xml)))
    x, y, _ = ctx.test_set((meta["input"]["height"], meta["input"]["width"]))
    xin = _input(x, meta)
    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_NUM_THREADS": 1})
    request = compiled.create_infer_request()

    def predict(imgs: np.ndarray) -> np.ndarray:
        batch = _input(imgs, meta)
        return np.array([int(np.argmax(request.infer({0: batch[i:i + 1]})[0])) for i in range(len(batch))])

    ctx.deployed = Deployed("OpenVINO Runtime CPU", (meta["input"]["height"], meta["input"]["width"]), predict,
                            predict(x))
    acc = 100.0 * float(np.mean(ctx.deployed.test_pred == y))
    result.rows += [measured("accuracy_pct", f"{precision.upper()} accuracy (OpenVINO Runtime CPU), "
                                             f"{ctx.test_name(len(y))}", round(acc, 4), "%"),
                    drop_row(f"{precision.upper()} drop vs float", float_acc, acc)]
    result.points.append(Point(precision, "OpenVINO IR", size, acc))
    timing_rows(ctx, result, "openvino", xml, xin[:1], f"OpenVINO CPU, {ctx.facts['cpu']}")

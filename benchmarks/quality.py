"""What the harness adds once a target's deployed model is measured: the pipeline's own accuracies from
R/manifest.json with the teacher-gap budget, the camera-shift suite (compress.shifts) through the target's runtime
with the worst-drop budget, and the same accuracy and shift rows for the user's own photos (--eval-data)."""
from __future__ import annotations

import math
import time

import numpy as np

from edgecore.io import read_json
from compress.shifts import SUITE, apply_shift
from edgecore.preprocess import to_float_nchw
from export.targets_common import load_onnx, nchw_input, ort_outputs, ort_session

from .context import FLOAT_ONNX, Context
from .results import Result, Row, info, measured, not_run

# Fixed: every target and every run sees the same shifted images. The suite runs on the whole test split: 12
# shifts x 600 images through TFLite-Micro (the slowest runtime) took 39 s on 2 busy cores, shifting included.
SHIFT_SEED = 0

# Manifest metric -> what it is; the stages write accuracies as fractions (0..1), like teacher_test_acc always was.
PIPELINE_ACCURACIES = (
    ("teacher_test_acc", "teacher accuracy (teach stage)"),
    ("baseline_float_acc", "hard-label baseline float accuracy (distill stage, {labels})"),
    ("student_float_acc", "KD student float accuracy (distill stage)"),
    ("student_int8_acc", "KD student INT8 accuracy (quantize stage, TFLite-Micro)"),
)


def _number(value) -> float | None:
    """A finite number, else None: a key an older run lacks (or wrote as null) is absent, never a crash."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def run_metrics(ctx: Context) -> dict:
    """R/manifest.json's merged stage metrics; {} for a run folder without one."""
    path = ctx.run_dir / "manifest.json"
    if "manifest_metrics" not in ctx.cache:
        metrics = read_json(path, "run manifest").get("metrics") if path.is_file() else {}
        ctx.cache["manifest_metrics"] = metrics if isinstance(metrics, dict) else {}
    return ctx.cache["manifest_metrics"]


def _labels(metrics: dict) -> str:
    k = metrics.get("data_labeled_per_class")
    if k == "all":
        return "all training labels"
    return f"{k} labelled images per class" if _number(k) is not None else "labels of the training split"


def pipeline_rows(ctx: Context) -> list[Row]:
    """Teacher, hard-label baseline, KD student float/INT8 and the gain, each on the data it was measured on (the
    stages' own accuracy_data name when they recorded one)."""
    m = run_metrics(ctx)
    full = m["accuracy_data"] if isinstance(m.get("accuracy_data"), str) else ctx.test_name()
    rows = []
    for key, label in PIPELINE_ACCURACIES:
        if _number(m.get(key)) is not None:
            rows.append(info(f"{label.format(labels=_labels(m))}, {full}", round(100.0 * m[key], 4), "%",
                             f"{key} in R/manifest.json"))
        if key == "teacher_test_acc" and _number(m.get("teacher_pool_acc")) is not None:
            rows.append(info(f"teacher accuracy (teach stage), unlabeled pool, {ctx.pool_known} images with a known "
                             "label", round(100.0 * m["teacher_pool_acc"], 4), "%",
                             "teacher_pool_acc: scored against true labels no training step reads"))
    if _number(m.get("kd_gain_points")) is not None:
        rows.append(info(f"KD gain: KD student INT8 minus hard-label baseline ({_labels(m)}), {full}",
                         round(m["kd_gain_points"], 4), "pts", "kd_gain_points in R/manifest.json"))
    return rows


def teacher_gap_row(ctx: Context, acc: float, n: int) -> Row:
    """Teacher minus deployed accuracy on the same test images: the budget that still means something when
    labels are scarce and the absolute floor is out of reach for any student."""
    d = ctx.deployed
    label = f"teacher minus {ctx.spec.precision.upper()} accuracy ({d.runtime}), {ctx.test_name(n)}"
    teacher = _number(run_metrics(ctx).get("teacher_test_acc"))
    if teacher is None:
        return not_run("teacher_gap_pts", label, "R/manifest.json records no teacher_test_acc")
    if n != ctx.test_total:
        return not_run("teacher_gap_pts", label, "the teacher's accuracy is recorded for the whole test split; "
                                                 "this run measured a --limit subset")
    return measured("teacher_gap_pts", label, round(100.0 * teacher - acc, 4), "pts",
                    f"teacher {100.0 * teacher:.2f} % (teacher_test_acc) vs {acc:.2f} % deployed")


def shift_suite(ctx: Context, key: str, x: np.ndarray, y: np.ndarray, clean_pred: np.ndarray, data: str,
                budgeted: bool) -> tuple[list[Row], dict]:
    """Every shift of compress.shifts.SUITE through the deployed model: accuracy per shift and the worst drop vs
    clean on the same images (budgeted by max_shift_drop_pts on the test split, info on the user's photos)."""
    d, precision = ctx.deployed, ctx.spec.precision.upper()
    prefix = "" if budgeted else "eval_"  # only the test split's worst drop is budgeted
    t0 = time.monotonic()
    clean_ok = clean_pred == y
    clean = 100.0 * float(np.mean(clean_ok))
    rows, shifts = [], []
    for name, description in SUITE.items():
        cache_key = ("shift", key, name, d.size)
        if cache_key not in ctx.cache:  # the same shifted images for every target of one --all
            ctx.cache[cache_key] = apply_shift(x, name, SHIFT_SEED)
        ok = d.predict(ctx.cache[cache_key]) == y
        acc = 100.0 * float(np.mean(ok))
        lost, gained = int(np.sum(clean_ok & ~ok)), int(np.sum(~clean_ok & ok))
        # The drop is (lost - gained) / n; counting each flipped image as an independent +-1 gives its standard
        # error, how far another draw of as many test images could move it.
        se = 100.0 * float(np.sqrt(lost + gained)) / max(len(y), 1)
        shifts.append({"name": name, "description": description, "accuracy_pct": round(acc, 4),
                       "drop_pts": round(clean - acc, 4), "lost": lost, "gained": gained, "se_pts": round(se, 4)})
        rows.append(measured(f"{prefix}shift_accuracy_pct", f"{precision} accuracy under {name} ({d.runtime}), {data}",
                             round(acc, 4), "%", f"drop {clean - acc:.2f} +- {se:.2f} pts vs clean {clean:.2f} % "
                             f"({lost} images lost, {gained} gained); {description}"))
    worst = max(shifts, key=lambda s: s["drop_pts"])
    seconds = time.monotonic() - t0
    rows.append(measured(f"{prefix}shift_drop_pts", f"worst drop under a camera shift ({worst['name']}, {d.runtime}), {data}",
                         worst["drop_pts"], "pts",
                         f"clean {clean:.2f} % -> {worst['accuracy_pct']:.2f} %, standard error of the drop "
                         f"+- {worst['se_pts']:.2f} pts on {len(y)} images; {len(shifts)} shifts, seed "
                         f"{SHIFT_SEED}" + ("" if budgeted else "; not budgeted: budgets hold on the test split")))
    print(f"[bench] shift suite: {len(shifts)} shifts x {len(y)} images ({data}) through {d.runtime}: "
          f"{seconds:.1f} s", flush=True)
    return rows, {"data": data, "runtime": d.runtime, "precision": precision, "images": int(len(y)),
                  "seed": SHIFT_SEED, "clean_pct": round(clean, 4), "budgeted": budgeted, "seconds": round(seconds, 1),
                  "shifts": shifts}


def _float_accuracy(ctx: Context, x_at, y) -> float:
    path = ctx.quant_file(FLOAT_ONNX)
    proto = load_onnx(path)
    _, h, w = nchw_input(proto)
    pred = ort_outputs(ort_session(proto), to_float_nchw(x_at((h, w)))).argmax(1)
    return 100.0 * float(np.mean(pred == y))


def eval_data_rows(ctx: Context, result: Result) -> None:
    """--eval-data: the user's photos through the deployed model and the float student, then the shift suite."""
    ev, d, precision = ctx.eval_data, ctx.deployed, ctx.spec.precision.upper()

    def at(size):
        if ("eval", size) not in ctx.cache:
            ctx.cache[("eval", size)] = ev.load(size)
        return ctx.cache[("eval", size)][0]

    x, y = at(d.size), ctx.cache[("eval", d.size)][1]
    pred = d.predict(x)
    acc = 100.0 * float(np.mean(pred == y))
    note = f"{ev.note}; not budgeted: the budgets hold on the run's test split"
    result.rows += [measured("eval_accuracy_pct", f"{precision} accuracy ({d.runtime}), {ev.name}", round(acc, 4), "%",
                             note),
                    info(f"float accuracy (onnxruntime, student_float.onnx), {ev.name}",
                         round(_float_accuracy(ctx, at, y), 4), "%", ev.note)]
    rows, suite = shift_suite(ctx, "eval", x, y, pred, ev.name, budgeted=False)
    result.rows += rows
    result.robustness.append(suite)


def add_quality_rows(ctx: Context, result: Result) -> None:
    """After the target's own rows: pipeline accuracies, teacher gap, shift suite, then --eval-data."""
    d = ctx.deployed
    x, y, _ = ctx.test_set(d.size)
    acc = 100.0 * float(np.mean(d.test_pred == y))
    result.data = {"test": ctx.test_name(len(y)), "eval": ctx.eval_data.name if ctx.eval_data else None,
                   "eval_skipped_unreadable": ctx.eval_data.skipped if ctx.eval_data else []}
    result.pipeline = pipeline_rows(ctx)
    result.rows += result.pipeline + [teacher_gap_row(ctx, acc, len(y))]
    rows, suite = shift_suite(ctx, f"test{ctx.limit}", x, y, d.test_pred, ctx.test_name(len(y)), budgeted=True)
    result.rows += rows
    result.robustness.append(suite)
    if ctx.eval_data is not None:
        eval_data_rows(ctx, result)

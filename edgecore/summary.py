"""The pipeline summary table: which stage metrics it shows and how each prints. `python -m compress all`
prints it and the release's model card renders the same rows."""
from __future__ import annotations

# Accuracies are on the test split named by the "accuracy_data" metric (printed above the table), except the
# teacher's pool row, which is measured on the unlabeled pool where true labels exist (procedural data).
SUMMARY_ROWS = (
    ("labelled images per class", "data_labeled_per_class", "int"),
    ("teacher accuracy", "teacher_test_acc", "pct"),
    ("teacher accuracy on the pool it labelled", "teacher_pool_acc", "pct"),
    ("hard-label baseline accuracy (float)", "baseline_float_acc", "pct"),
    ("KD student accuracy (float)", "student_float_acc", "pct"),
    ("KD student accuracy (INT8, TFLite-Micro)", "student_int8_acc", "pct"),
    ("gain: KD INT8 minus baseline (points)", "kd_gain_points", "pts"),
    ("INT8 drop vs float (points)", "int8_drop_points", "pts"),
    ("teacher-student agreement", "teacher_student_agreement", "pct"),
    ("INT8 model bytes", "model_bytes", "int"),
    ("TFLite-Micro arena bytes", "arena_bytes", "int"),
    ("MACs", "macs", "int"),
    ("parameters", "params", "int"),
)


def format_metric(value, kind: str) -> str:
    if value is None:
        return "not run"
    if isinstance(value, str):
        return value
    if kind == "pct":
        return f"{100.0 * value:.2f} %"
    if kind == "pts":
        return f"{value:+.2f}"
    return f"{int(value):,}"


def summary_table(metrics: dict) -> str:
    width = max(len(r[0]) for r in SUMMARY_ROWS)
    lines = [f"accuracies measured on: {metrics.get('accuracy_data', 'the test split')}", "",
             f"{'metric'.ljust(width)}  value", f"{'-' * width}  {'-' * 12}"]
    lines += [f"{label.ljust(width)}  {format_metric(metrics.get(key), kind)}" for label, key, kind in SUMMARY_ROWS]
    return "\n".join(lines)

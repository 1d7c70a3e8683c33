"""One row per measurement, and the budget check that turns rows into PASS / FAIL / not run / info."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

# metric -> (budget key in targets/*.toml, how the measured value must compare to it)
BUDGETED = {
    "model_bytes": ("model_bytes", "<="),
    "flash_bytes": ("flash_bytes", "<="),
    "ram_bytes": ("ram_bytes", "<="),
    "latency_ms": ("latency_ms", "<="),
    "accuracy_pct": ("min_accuracy_pct", ">="),
    "drop_pts": ("max_drop_pts", "<="),
    "teacher_gap_pts": ("max_teacher_gap_pts", "<="),
    "shift_drop_pts": ("max_shift_drop_pts", "<="),
}
PASS, FAIL, NOT_RUN, INFO = "PASS", "FAIL", "not run", "info"


@dataclass
class Row:
    metric: str            # a BUDGETED key, "ops", or a free name for an info row
    label: str             # what was measured, with which runtime
    value: float | int | None
    unit: str = ""
    note: str = ""         # where the number comes from, or why it was not run
    passed: bool | None = None  # set by non-numeric checks (op support)
    budget: float | int | None = None
    status: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def measured(metric: str, label: str, value, unit: str, note: str = "") -> Row:
    return Row(metric, label, value, unit, note)


def not_run(metric: str, label: str, reason: str) -> Row:
    return Row(metric, label, None, note=f"not run: {reason}")


def info(label: str, value, unit: str = "", note: str = "") -> Row:
    return Row("info", label, value, unit, note)


def check(label: str, passed: bool, note: str, metric: str = "ops") -> Row:
    return Row(metric, label, None, note=note, passed=passed)


@dataclass
class Point:
    """One (model size, accuracy) pair for the accuracy-vs-size plot."""
    precision: str
    runtime: str
    model_bytes: int
    accuracy_pct: float


@dataclass
class Result:
    target: str
    rows: list[Row] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    data: dict = field(default_factory=dict)        # names of the image sets the accuracies were measured on
    pipeline: list[Row] = field(default_factory=list)  # the run manifest's accuracies (teacher, baseline, KD)
    robustness: list[dict] = field(default_factory=list)  # one shift-suite result per image set

    def failures(self) -> list[Row]:
        return [r for r in self.rows if r.status == FAIL]


def evaluate(rows: list[Row], budgets: dict) -> list[Row]:
    """Fill in budget and status of every row against the target's budgets."""
    for r in rows:
        if r.passed is not None:
            r.status = PASS if r.passed else FAIL
        elif r.note.startswith("not run"):
            r.status = NOT_RUN
        elif r.metric in BUDGETED and BUDGETED[r.metric][0] in budgets:
            key, op = BUDGETED[r.metric]
            r.budget = budgets[key]
            ok = r.value >= r.budget if op == ">=" else r.value <= r.budget
            r.status = PASS if ok else FAIL
        else:
            r.status = INFO
    return rows


def fmt(value, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:,.3f}" if abs(value) < 10 else f"{value:,.2f}"
    else:
        text = f"{value:,}"
    return f"{text} {unit}".strip()


def budget_text(r: Row) -> str:
    if r.budget is None:
        return "-"
    op = BUDGETED[r.metric][1]
    return f"{op} {fmt(r.budget, r.unit)}"


def failure_line(r: Row) -> str:
    if r.passed is not None:
        return f"{r.metric}: {r.label}: {r.note}"
    op = BUDGETED[r.metric][1]
    broken = ">" if op == "<=" else "<"
    return f"{r.metric}: {r.label} = {fmt(r.value, r.unit)} {broken} budget {BUDGETED[r.metric][0]} = " \
           f"{fmt(r.budget, r.unit)}"

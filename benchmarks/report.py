"""Render a target's result: console table, report.json, report.md and PNG plots (matplotlib, Agg)."""
from __future__ import annotations

import datetime as _dt
from pathlib import Path

from edgecore.io import atomic_path, tool_versions, write_json_atomic, write_text_atomic

from .results import FAIL, NOT_RUN, PASS, Result, budget_text, fmt
from edgecore.targets import TargetSpec

STATUS_COLOURS = {PASS: "#2e7d32", FAIL: "#c62828"}


def _cells(r) -> list[str]:
    return [r.label, fmt(r.value, r.unit), budget_text(r), r.status, r.note]


def table(result: Result) -> str:
    header = ["metric", "measured", "budget", "status", "note"]
    rows = [_cells(r) for r in result.rows]
    widths = [max(len(c) for c in col) for col in zip(header, *rows)]
    widths[-1] = 0  # the note column is last: no padding
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths[:-1]] + ["----"])] + [line(c) for c in rows])


def verdict(result: Result) -> str:
    fails = result.failures()
    if fails:
        return f"FAIL ({len(fails)} budget{'s' if len(fails) > 1 else ''} broken: " \
               f"{', '.join(sorted({r.metric for r in fails}))})"
    skipped = sum(r.status == NOT_RUN for r in result.rows)
    return "PASS" + (f" ({skipped} not run)" if skipped else "")


def to_json(result: Result, spec: TargetSpec, run_dir: Path, facts: dict) -> dict:
    return {
        "target": spec.name,
        "description": spec.description,
        "run": str(run_dir),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "verdict": verdict(result),
        "passed": not result.failures(),
        "budgets": spec.budgets,
        "device": spec.device,
        "host": facts,
        "rows": [r.to_dict() for r in result.rows],
        "accuracy_vs_size": [p.__dict__ for p in result.points],
        "data": result.data,
        "pipeline": [r.to_dict() for r in result.pipeline],
        "robustness": result.robustness,
        "versions": tool_versions(),
    }


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(result: Result, spec: TargetSpec, run_dir: Path) -> str:
    lines = [f"# Benchmark: {spec.name}", "", spec.description, "",
             f"Run folder: `{run_dir}`. Verdict: **{verdict(result)}**. Rows marked `not run` could not be "
             "measured on this machine; the note says why. Nothing in this table is estimated.", "",
             "| metric | measured | budget | status | note |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in _cells(r)) + " |" for r in result.rows]
    lines += ["", "Each measured value as a share of its budget:", "", "![budgets](budgets.png)", "",
              f"Accuracy against model size, per precision ({result.data.get('test', 'test split')}):", "",
              "![accuracy vs size](accuracy_vs_size.png)", ""]
    if result.robustness:
        lines += ["Accuracy per camera shift (compress.shifts.SUITE, fixed seed) through the deployed model:", "",
                  "![robustness](robustness.png)", ""]
    return "\n".join(lines)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def plot_budgets(result: Result, title: str, path: Path) -> None:
    """Horizontal bars: measured / budget in percent (accuracy: budget / measured, so >100 % = broken)."""
    plt = _plt()
    rows = [r for r in result.rows if r.budget is not None and r.value is not None]
    fig, ax = plt.subplots(figsize=(8, 0.5 * max(len(rows), 1) + 1.2))
    if rows:
        # A negative drop (INT8 better than float) uses none of its budget.
        share = [max(0.0, 100.0 * (r.budget / r.value if r.metric == "accuracy_pct" else r.value / r.budget))
                 if r.value else 0.0 for r in rows]
        ax.barh([r.label for r in rows], share, color=[STATUS_COLOURS.get(r.status, "grey") for r in rows])
        for y, (r, s) in enumerate(zip(rows, share)):
            ax.text(s, y, f" {fmt(r.value, r.unit)} / {fmt(r.budget, r.unit)}", va="center", fontsize=8)
        ax.invert_yaxis()
    else:
        ax.text(0.5, 0.5, "no budgeted metric was measured", ha="center", transform=ax.transAxes)
    ax.axvline(100.0, color="black", linestyle="--", linewidth=1)
    ax.set_xlabel("% of budget used (accuracy: budget / measured); right of the line = broken")
    ax.set_title(title)
    _save(fig, path)
    plt.close(fig)


def plot_robustness(suites: list[dict], title: str, path: Path, budget: float | None = None) -> None:
    """Grouped bars: accuracy per shift, one colour per image set, its clean accuracy as a dashed line; the
    budgeted set's clean accuracy minus max_shift_drop_pts as a red dotted line (a bar below it is broken)."""
    plt = _plt()
    names = [s["name"] for s in suites[0]["shifts"]]
    fig, ax = plt.subplots(figsize=(max(7.5, 0.9 * len(names) + 2), 4.5))
    width = 0.8 / len(suites)
    for i, suite in enumerate(suites):
        xs = [j + (i - (len(suites) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, [s["accuracy_pct"] for s in suite["shifts"]], width, color=f"C{i}",
               label=f"{suite['data']} ({suite['runtime']})")
        ax.axhline(suite["clean_pct"], color=f"C{i}", linestyle="--", linewidth=1)
        if suite["budgeted"] and budget is not None:
            ax.axhline(suite["clean_pct"] - budget, color=STATUS_COLOURS[FAIL], linestyle=":", linewidth=1.5,
                       label=f"clean - max_shift_drop_pts ({fmt(float(budget), 'pts')})")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"{suites[0]['precision']} accuracy (%); dashed: clean")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    _save(fig, path)
    plt.close(fig)


def plot_accuracy_vs_size(points, title: str, path: Path, data: str = "test split") -> None:
    """Colour = precision, marker = runtime: several runtimes often share one size and accuracy."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colours = {prec: f"C{i}" for i, prec in enumerate(sorted({p.precision for p in points}))}
    series = sorted({(p.precision, p.runtime) for p in points})
    for i, (precision, runtime) in enumerate(series):
        pts = [p for p in points if (p.precision, p.runtime) == (precision, runtime)]
        ax.scatter([p.model_bytes / 1024 for p in pts], [p.accuracy_pct for p in pts], s=60, alpha=0.8,
                   color=colours[precision], marker="osD^v<>Px*"[i % 10], label=f"{precision}: {runtime}")
    if points:
        sizes = [p.model_bytes for p in points]
        if max(sizes) / min(sizes) > 20:
            ax.set_xscale("log")
        ax.legend(fontsize=7, loc="best")
    else:
        ax.text(0.5, 0.5, "no accuracy was measured", ha="center", transform=ax.transAxes)
    ax.set_xlabel("model size (KiB)")
    ax.set_ylabel(f"accuracy (%), {data}")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    _save(fig, path)
    plt.close(fig)


def write(result: Result, spec: TargetSpec, run_dir: Path, out_dir: Path, facts: dict,
          json_copy: Path | None = None) -> dict:
    doc = to_json(result, spec, run_dir, facts)
    write_json_atomic(out_dir / "report.json", doc)
    if json_copy is not None:
        write_json_atomic(json_copy, doc)
    write_text_atomic(out_dir / "report.md", to_markdown(result, spec, run_dir))
    plot_budgets(result, f"{spec.name}: measured vs budget", out_dir / "budgets.png")
    plot_accuracy_vs_size(result.points, f"{spec.name}: accuracy vs model size", out_dir / "accuracy_vs_size.png",
                          result.data.get("test", "test split"))
    if result.robustness:
        plot_robustness(result.robustness, f"{spec.name}: accuracy per camera shift", out_dir / "robustness.png",
                        spec.budgets.get("max_shift_drop_pts"))
    else:  # no suite ran (unsupported ops): no plot from an earlier run may pose as this one's
        (out_dir / "robustness.png").unlink(missing_ok=True)
    return doc


def write_summary(docs: list[dict], results: list[Result], out_dir: Path, json_copy: Path | None = None,
                  skipped: list[str] = (), crashed: list[str] = ()) -> str:
    """One table for `--all`: per target, the verdict and the headline numbers, each accuracy with its images;
    then the pipeline's own accuracies (teacher, baseline, KD student), which every target shares."""
    data = next((d["data"] for d in docs if d.get("data")), {})
    shift_data = next((s["data"] for d in docs for s in d.get("robustness", []) if s["budgeted"]), "test split")
    eval_col = [f"accuracy % ({data['eval']})"] if data.get("eval") else []
    header = ["target", "verdict", f"accuracy % ({data.get('test', 'test split')})",
              f"worst shift drop pts ({shift_data})", *eval_col, "model bytes", "RAM bytes", "latency ms"]
    lines = ["# Benchmark summary", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for doc in docs:
        def first(metric):
            vals = [r for r in doc["rows"] if r["metric"] == metric and r["value"] is not None]
            return fmt(vals[0]["value"]) if vals else "not run"
        suite = next((s for s in doc.get("robustness", []) if s["budgeted"]), None)
        worst = max(suite["shifts"], key=lambda s: s["drop_pts"]) if suite else None
        cells = [doc["target"], _md_escape(doc["verdict"]), first("accuracy_pct"),
                 f"{fmt(worst['drop_pts'])} ({worst['name']})" if worst else "not run",
                 *([first("eval_accuracy_pct")] if eval_col else []), first("model_bytes"), first("ram_bytes"),
                 first("latency_ms")]
        lines.append("| " + " | ".join(cells) + " |")
    blank = " |" * (len(header) - 2)
    lines += [f"| {line.split(':', 1)[0]} | not run:{_md_escape(line.split(':', 1)[1])}{blank}" for line in skipped]
    lines += [f"| {line.split(':', 1)[0]} | CRASHED:{_md_escape(line.split(':', 1)[1])}{blank}" for line in crashed]
    pipeline = next((d["pipeline"] for d in docs if d.get("pipeline")), [])
    if pipeline:
        lines += ["", "The pipeline's own accuracies (R/manifest.json):", "", "| what, on which images | value |",
                  "|---|---|"] + [f"| {_md_escape(r['label'])} | {fmt(r['value'], r['unit'])} |" for r in pipeline]
    text = "\n".join(lines) + "\n"
    summary = {"targets": docs, "not_run": list(skipped), "crashed": list(crashed),
               "passed": all(d["passed"] for d in docs) and not crashed}
    write_json_atomic(out_dir / "summary.json", summary)
    if json_copy is not None:
        write_json_atomic(json_copy, summary)
    write_text_atomic(out_dir / "summary.md", text)
    points = list({(p.precision, p.runtime, p.model_bytes): p for r in results for p in r.points}.values())
    plot_accuracy_vs_size(points, "all targets: accuracy vs model size", out_dir / "accuracy_vs_size.png",
                          data.get("test", "test split"))
    return text

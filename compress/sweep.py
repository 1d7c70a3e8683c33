"""`python -m compress.sweep`: teacher, hard-label baseline and KD student accuracy over seeds and label budgets,
as the markdown table in docs/distillation.md. Each cell is the default pipeline's data -> teach -> distill stages
(float models; the INT8 figures come from `make all`) in its own run folder under --out."""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

from edgecore.errors import UserError, one_line_errors
from edgecore.io import read_json, write_text_atomic
from .cli import _build_parser

ROWS = (("teacher (effnet-lite0, fitted on the labelled images + self-training on the pool)", "teacher_test_acc"),
        ("hard-label baseline (student network, labelled images only)", "baseline_float_acc"),
        ("KD student (labelled images + teacher-labelled pool)", "student_float_acc"))


def _all_args(argv):
    return _build_parser("all").parse_args(["all", *argv])


def run_cell(out: Path, seed: int, budget: str, extra: list[str]) -> dict:
    """data -> teach -> distill for one (seed, budget); reuses the seed's rendered images across budgets."""
    from . import data, distill, teach

    run = out / f"seed{seed}-k{budget}"
    first = next((p for p in sorted(out.glob(f"seed{seed}-k*")) if (p / "data" / "images").is_dir()), None)
    if first is not None and first != run and not (run / "data" / "images").exists():
        shutil.copytree(first / "data" / "images", run / "data" / "images")
        shutil.copy2(first / "data" / "dataset.json", run / "data" / "dataset.json")
    args = _all_args(["--run", str(run), "--seed", str(seed), "--labeled-per-class", budget, *extra])
    metrics: dict = {}
    for stage in (data, teach, distill):
        metrics.update(stage.run(args) or {})
    return metrics


def _cell(values: list[float]) -> str:
    if not values:
        return "not run"
    pct = [100.0 * v for v in values]
    if len(pct) == 1:
        return f"{pct[0]:.1f} (1 seed)"
    return f"{statistics.mean(pct):.1f} ± {statistics.stdev(pct):.1f} ({len(pct)} seeds)"


def table(results: dict, seeds: list[int], budgets: list[str]) -> str:
    """Mean ± sample standard deviation over the seeds that finished each cell (their count is shown)."""
    head = "| model | " + " | ".join(f"K = {b}" if b != "all" else "all labels" for b in budgets) + " |"
    lines = [head, "|---|" + "---|" * len(budgets)]
    done = {b: [results[(s, b)] for s in seeds if (s, b) in results] for b in budgets}
    for label, key in ROWS:
        lines.append(f"| {label} | " + " | ".join(_cell([m[key] for m in done[b]]) for b in budgets) + " |")
    gains = [_cell([m["student_float_acc"] - m["baseline_float_acc"] for m in done[b]]) for b in budgets]
    lines.append("| gain: KD student minus baseline (points) | " + " | ".join(gains) + " |")
    return "\n".join(lines)


def collect(out: Path, seeds: list[int], budgets: list[str]) -> dict:
    """Metrics of the cells whose distill stage finished (from their run manifests)."""
    results = {}
    for seed in seeds:
        for budget in budgets:
            path = out / f"seed{seed}-k{budget}" / "manifest.json"
            if path.is_file():
                m = read_json(path, "run manifest").get("metrics", {})
                if all(isinstance(m.get(k), float) for _, k in ROWS):
                    results[(seed, budget)] = m
    return results


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m compress.sweep", description=__doc__)
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--budgets", default="5,20,50,all",
                   help="comma-separated labels per class, 'all' = fully supervised (default 5,20,50,all)")
    p.add_argument("--out", type=Path, default=Path("artifacts/sweep"), help="parent of the run folders")
    p.add_argument("--table", type=Path, default=None, help="also write the markdown table to this file")
    p.add_argument("--collect", action="store_true",
                   help="run nothing: build the table from the cells already finished under --out")
    p.add_argument("extra", nargs=argparse.REMAINDER,
                   help="after --, options passed to every stage (e.g. -- --student-epochs 10)")
    return p


@one_line_errors("interrupted: re-run the same command; finished stages are reused")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise UserError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    budgets = [b.strip() for b in args.budgets.split(",") if b.strip()]
    extra = [a for a in args.extra if a != "--"]
    from .teachers import effnet

    effnet.KEEP_FEATURES = True  # the backbone's features of a seed's images serve every budget
    results, t0 = {}, time.monotonic()
    for seed in seeds if not args.collect else ():
        effnet.FEATURE_CACHE.clear()
        for budget in budgets:
            print(f"== seed {seed}, labels per class {budget} ==", flush=True)
            results[(seed, budget)] = run_cell(args.out, seed, budget, extra)
    if args.collect:
        results = collect(args.out, seeds, budgets)
    text = table(results, seeds, budgets)
    print(f"\n{len(results)} runs in {time.monotonic() - t0:.0f} s; accuracy on each run's procedural test split, "
          f"600 images (mean ± sample standard deviation over the seeds that finished, of {args.seeds}):\n\n{text}")
    if args.table is not None:
        write_text_atomic(args.table, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

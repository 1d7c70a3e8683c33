"""`python -m benchmarks.run --target T`: measure a run's artifacts for one device and enforce targets/T.toml.

Exit status: 0 every measured budget holds (some may be "not run" here), 1 a budget is broken (named on
stderr), 2 bad input (unknown target, malformed spec, missing pipeline outputs) as one line, 3 a tool the
harness ran crashed (traceback printed), so a crash never reads as a broken budget."""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

from edgecore.config import from_args
from edgecore.errors import UserError, os_error_line
from edgecore.manifest import record_stage, run_lock

from . import report
from .context import Context
from .results import Result, evaluate, failure_line, not_run
from edgecore.targets import DEFAULT_TARGETS_DIR, host_facts, load_all, resolve


def _measure(runtime: str):
    """The measuring function for a runtime; imported lazily so `--help` stays instant."""
    if runtime == "tflm":
        from .measure_rp2040 import measure_rp2040
        return measure_rp2040
    if runtime == "onnxruntime":
        from .measure_onnx import measure_onnxruntime
        return measure_onnxruntime
    if runtime == "tensorrt":
        from .measure_onnx import measure_tensorrt
        return measure_tensorrt
    if runtime == "openvino":
        from .measure_openvino import measure_openvino
        return measure_openvino
    from .measure_edgetpu import measure_edgetpu
    return measure_edgetpu


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Check a run's model against a device's budgets (targets/<T>.toml): op support first, then "
                    "accuracy on the test split with the runtime the device uses, model/flash/RAM sizes read from "
                    "the artifacts, and latency where it can be measured. Writes R/bench/<T>/report.{json,md} and "
                    "PNG plots. Exit 0 = budgets hold, 1 = a budget is broken, 2 = bad input, 3 = a tool crashed.")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--target", metavar="T",
                       help="target name (a file in the targets folder, e.g. rp2040, jetson-nano, rpi4) or a family "
                            "alias: 'jetson' picks the Jetson this runs on, else jetson-orin-nano")
    which.add_argument("--all", action="store_true",
                       help="benchmark every target in the targets folder and write R/bench/summary.{md,json}")
    p.add_argument("--run", type=Path, default=Path("artifacts/default"),
                   help="run folder written by `python -m compress all` (default: artifacts/default)")
    p.add_argument("--device", metavar="PORT",
                   help="serial port of a Pico running our firmware (e.g. /dev/ttyACM0), or 'auto': the Pico on USB, "
                        "found by its VID:PID; adds on-device latency and accuracy for rp2040")
    p.add_argument("--json", type=Path, metavar="OUT",
                   help="also write the report (with --all: the summary) as JSON to this path")
    p.add_argument("--targets-dir", type=Path, default=DEFAULT_TARGETS_DIR, metavar="D",
                   help=f"folder of target specs *.toml (default: {DEFAULT_TARGETS_DIR})")
    p.add_argument("--build-dir", type=Path, default=Path("build/rp2040"), metavar="DIR",
                   help="rp2040 firmware folder from `python -m export.rp2040.build` (default: build/rp2040)")
    p.add_argument("--limit", type=int, metavar="N",
                   help="evaluate only the first N test images (quick checks; default: the whole test split)")
    p.add_argument("--eval-data", type=Path, metavar="DIR",
                   help="your own labelled photos, an ImageFolder DIR/<class>/<image> with the run's classes: adds "
                        "accuracy and camera-shift rows on them beside the test split's, preprocessed like training "
                        "images (unreadable images are skipped and counted)")
    return p


@dataclass(frozen=True)
class BenchConfig:
    """Options of the benchmark harness (`python -m benchmarks.run --help`): one `target` (or family alias), or
    `all` the target files."""
    target: str | None = None
    all: bool = False
    device: str | None = None             # serial port of a Pico, or "auto"
    json: Path | None = None              # also write the report (with all: the summary) here
    targets_dir: Path = DEFAULT_TARGETS_DIR
    build_dir: Path = Path("build/rp2040")
    limit: int | None = None              # only the first N test images
    eval_data: Path | None = None         # the user's labelled ImageFolder


def bench_target(spec, run_dir: Path, cfg: BenchConfig, eval_folder, facts: dict,
                 cache: dict) -> tuple[Result, dict]:
    result = Result(spec.name)
    ctx = Context(run_dir=run_dir, spec=spec, facts=facts, build_dir=cfg.build_dir, device_port=cfg.device,
                  limit=cfg.limit, cache=cache, eval_data=eval_folder)
    print(f"== {spec.name}: {spec.description}", flush=True)
    _measure(spec.runtime)(ctx, result)
    if ctx.deployed is not None:
        from .quality import add_quality_rows

        add_quality_rows(ctx, result)
    if any(r.metric == "ops" and r.passed is False for r in result.rows):
        result.rows.append(not_run("accuracy_pct", "accuracy, robustness, latency, memory", "stopped: unsupported ops"))
    evaluate(result.rows, spec.budgets)
    out_dir = run_dir / "bench" / spec.name
    doc = report.write(result, spec, run_dir, out_dir, facts, None if cfg.all else cfg.json)
    record_stage(run_dir, f"bench/{spec.name}", outputs=sorted(out_dir.glob("*.*")),
                 params={"target": str(spec.path), "budgets": spec.budgets, "limit": cfg.limit,
                         "eval_data": str(eval_folder.root) if eval_folder else None},
                 metrics={f"bench_{spec.name.replace('-', '_')}_verdict": doc["verdict"]})
    print(report.table(result))
    print(f"{spec.name}: {report.verdict(result)}  -> {out_dir}/report.md\n", flush=True)
    return result, doc


def _device(run_dir: Path, cfg: BenchConfig, target) -> str | None:
    """Checks the options against the run and the target; the serial port to use (auto: the Pico found on USB)."""
    if not run_dir.is_dir():
        raise UserError(f"run folder not found: {run_dir} (run `python -m compress all --run {run_dir}` first)")
    if cfg.device and target is not None and target.runtime != "tflm":
        raise UserError(f"--device is a serial port for a Pico (rp2040); target {target.name} does not use it")
    if cfg.limit is not None and cfg.limit <= 0:
        raise UserError(f"--limit must be a positive number of images, got {cfg.limit}")
    device = cfg.device
    if device == "auto":
        from export.rp2040.ports import find_port

        device = find_port()
    if device and not os.path.exists(device):
        raise UserError(f"serial port not found: {device}")
    return device


def run(args) -> int:
    return benchmark(args.run, from_args(BenchConfig, args))


def benchmark(run_dir: Path, cfg: BenchConfig) -> int:
    """Stage benchmarks: R/ (+ the firmware folder) -> R/bench/<target>/report.{json,md} (and with `all`
    R/bench/summary.md); returns the exit status: 0 budgets hold, 1 a budget is broken, 3 a tool crashed."""
    run_dir = Path(run_dir)
    if cfg.all == (cfg.target is not None):
        raise UserError("name one target, or all of them")
    specs = load_all(cfg.targets_dir)
    facts = host_facts()
    target = None if cfg.all else resolve(cfg.target, specs, facts)
    device = _device(run_dir, cfg, target)
    eval_folder = None
    if cfg.eval_data is not None:  # checked before any measurement: a wrong folder must not cost a benchmark first
        from compress.data import load_dataset

        from .evaldata import index_eval_folder

        eval_folder = index_eval_folder(cfg.eval_data, load_dataset(run_dir).classes)
    # Absolute from here on: exporters, the firmware build and probes run as subprocesses in the repo root.
    run_dir, cfg = run_dir.resolve(), replace(cfg, device=device, build_dir=Path(cfg.build_dir).resolve())
    with run_lock(run_dir, f"python -m benchmarks.run --{'all' if cfg.all else 'target ' + target.name}"):
        return _bench(run_dir, cfg, eval_folder, specs, facts, target)


def _bench(run_dir: Path, cfg: BenchConfig, eval_folder, specs: dict, facts: dict, target) -> int:
    cache: dict = {}
    if target is not None:
        result, _ = bench_target(target, run_dir, cfg, eval_folder, facts, cache)
        for r in result.failures():
            print(f"FAIL {failure_line(r)}", file=sys.stderr)
        return 1 if result.failures() else 0
    results, docs, skipped, crashed = [], [], [], []
    for spec in specs.values():
        try:
            result, doc = bench_target(spec, run_dir, cfg, eval_folder, facts, cache)
        except UserError as e:  # one target's missing exporter must not hide the others
            skipped.append(f"{spec.name}: {e}")
            print(f"{spec.name}: not run: {e}\n", flush=True)
            continue
        except Exception as e:  # a crashing tool: report it, keep measuring the other targets
            traceback.print_exc()
            crashed.append(f"{spec.name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            continue
        results.append(result)
        docs.append(doc)
    if not results and not crashed:
        raise UserError(f"no target could be benchmarked; first problem: {skipped[0]}")
    text = report.write_summary(docs, results, run_dir / "bench", cfg.json, skipped, crashed)
    print(text)
    failed = [f"{r.target}: {failure_line(f)}" for r in results for f in r.failures()]
    for line in failed:
        print(f"FAIL {line}", file=sys.stderr)
    for line in crashed:
        print(f"CRASH {line}", file=sys.stderr)
    return 3 if crashed else 1 if failed else 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # full disk, read-only or forbidden folder: the user's to fix, not a tool crash
        print(f"error: {os_error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:  # a crash in a tool the harness ran: exit 3, never 1 (which means "budget broken")
        traceback.print_exc()
        return 3


if __name__ == "__main__":
    sys.exit(main())

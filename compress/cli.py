"""`python -m compress`: one subcommand per pipeline stage, and `all` to run them in order."""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from edgecore.errors import one_line_errors
from edgecore.manifest import run_lock
from edgecore.summary import summary_table
from export import ExportConfig, export_target

# Stage name -> (module, one-line help). Modules are imported only when their stage is used,
# so `--help` and light stages do not pay for torch/tensorflow start-up.
STAGES = {
    "data": ("compress.data", "generate the procedural pizza set or index your ImageFolder -> R/data/dataset.json"),
    "teach": ("compress.teach", "fit/load the teacher and cache its soft labels -> R/teacher/soft_labels.npz"),
    "distill": ("compress.distill", "train the tiny CNN student from soft labels, then INT8 QAT -> R/student/"),
    "quantize": ("compress.quantize", "full-INT8 .tflite + TFLite-Micro C array + ONNX, verified in TFLM -> R/quant/"),
    "release": ("compress.release", "pack one run into dist/<name>-<version>/ with checksums and a model card"),
}
PIPELINE = ("data", "teach", "distill", "quantize")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", type=Path, default=Path("artifacts/default"),
                   help="run folder holding every stage's files (default: artifacts/default)")
    p.add_argument("--seed", type=int, default=0, help="seed for data, training and calibration (default: 0)")


def _stage_module(name: str):
    return importlib.import_module(STAGES[name][0])


def _build_parser(stage: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m compress",
        description="Distil a vision teacher into a tiny full-INT8 CNN. Stages run in order "
                    "data -> teach -> distill -> quantize -> export; each reads the files the previous one wrote.")
    sub = parser.add_subparsers(dest="stage", metavar="STAGE")
    for name, (_, help_) in STAGES.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        _common(sp)
        if name == stage or stage == "all":
            _stage_module(name).add_arguments(sp)
    sp = sub.add_parser("all", help="run data, teach, distill and quantize, then print the summary table",
                        description="Run every stage on the same run folder and print the summary table.",
                        conflict_handler="resolve")
    _common(sp)
    if stage == "all":
        for name in PIPELINE:
            _stage_module(name).add_arguments(sp)
    sp = sub.add_parser("export", help="write one target's artifacts (a targets/<name>.toml of a runtime with an "
                                       "exporter: jetson-nano, rpi4, ...) -> R/export/<target>/")
    _common(sp)
    sp.add_argument("--target", required=True, help="target name, e.g. rpi4 or jetson-orin-nano")
    return parser


def _run_export(args) -> dict:
    return export_target(args.run, ExportConfig(target=args.target, seed=args.seed))


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    stage = next((a for a in argv if not a.startswith("-")), None)
    parser = _build_parser(stage if stage in STAGES or stage == "all" else None)
    args = parser.parse_args(argv)
    if args.stage is None:
        parser.print_help()
        return 2
    return _dispatch(args)


@one_line_errors("interrupted: re-run the same command to resume from the cache/checkpoint")
def _dispatch(args) -> int:
    with run_lock(args.run, f"python -m compress {args.stage}", create=args.stage in ("data", "all")):
        return _run_stage(args)


def _run_stage(args) -> int:
    if args.stage == "export":
        metrics = _run_export(args)
    elif args.stage == "all":
        metrics, t0 = {}, time.monotonic()
        for name in PIPELINE:
            print(f"== {name} ==", flush=True)
            metrics.update(_stage_module(name).run(args) or {})
        print(f"\npipeline finished in {time.monotonic() - t0:.0f} s; run folder {args.run}\n")
        print(summary_table(metrics))
        return 0
    else:
        metrics = _stage_module(args.stage).run(args) or {}
    for k, v in metrics.items():
        print(f"{k}: {v}")
    return 0

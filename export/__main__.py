"""`python -m export --run R --target T`: write one device's artifacts without the rest of the CLI."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgecore.config import from_args
from edgecore.errors import one_line_errors
from edgecore.manifest import run_lock

from . import ExportConfig, export_target, exportable


@one_line_errors("interrupted: nothing was written; re-run the same command")
def main(argv=None) -> int:
    d = ExportConfig(target="")
    p = argparse.ArgumentParser(prog="python -m export",
                                description="Write a device's deployable artifacts and README to R/export/<target>/, "
                                            "checked in the runtimes available here.")
    p.add_argument("--run", type=Path, default=Path("artifacts/default"),
                   help="run folder with R/quant/ from the quantize stage (default: artifacts/default)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--target", help="device to export for: a target file's name (targets/<name>.toml)")
    which.add_argument("--all", action="store_true", help="every target the targets folder lists for export")
    p.add_argument("--targets-dir", type=Path, default=d.targets_dir,
                   help="folder of target files (default: the repository's targets/)")
    p.add_argument("--out", type=Path, help="output folder (default: R/export/<target>)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed for the calibration subset (default: 0)")
    p.add_argument("--calib", type=int, default=d.calib,
                   help="train images used to calibrate INT8 (openvino, TensorRT int8 re-quantization)")
    p.add_argument("--threads", type=int, default=d.threads,
                   help="CPU threads for the checks and timings (default: 1)")
    p.add_argument("--runs", type=int, default=d.runs, help="timed runs per latency median (default: 50)")
    args = p.parse_args(argv)
    if args.calib < 1 or args.threads < 1 or args.runs < 1:
        p.error("--calib, --threads and --runs must be >= 1")
    if args.all and args.out is not None:
        p.error("--out names one target's folder: use it with --target")
    targets = sorted(exportable(args.targets_dir)) if args.all else [args.target]
    with run_lock(args.run, f"python -m export --{'all' if args.all else 'target ' + args.target}"):
        for target in targets:
            cfg = from_args(ExportConfig, argparse.Namespace(**{**vars(args), "target": target}))
            metrics = export_target(args.run, cfg)
            for k, v in metrics.items():
                print(f"{k}: {v}")
            print(f"wrote {cfg.out or args.run / 'export' / target}")
    return 0

if __name__ == "__main__":
    sys.exit(main())

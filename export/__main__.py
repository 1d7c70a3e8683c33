"""`python -m export --run R --target T`: write one device's artifacts without the rest of the CLI."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgecore.errors import one_line_errors
from edgecore.manifest import run_lock

from . import EXPORTERS


@one_line_errors("interrupted: nothing was written; re-run the same command")
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m export",
                                description="Write a device's deployable artifacts and README to R/export/<target>/, "
                                            "checked in the runtimes available here.")
    p.add_argument("--run", type=Path, default=Path("artifacts/default"),
                   help="run folder with R/quant/ from the quantize stage (default: artifacts/default)")
    p.add_argument("--target", required=True, choices=sorted(EXPORTERS), help="device to export for")
    p.add_argument("--out", type=Path, help="output folder (default: R/export/<target>)")
    p.add_argument("--seed", type=int, default=0, help="seed for the calibration subset (default: 0)")
    p.add_argument("--calib", type=int, default=300,
                   help="train images used to calibrate INT8 (openvino, jetson-orin-nano re-quantization)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for the checks and timings (default: 1)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per latency median (default: 50)")
    args = p.parse_args(argv)
    if args.calib < 1 or args.threads < 1 or args.runs < 1:
        p.error("--calib, --threads and --runs must be >= 1")
    out = args.out or args.run / "export" / args.target
    with run_lock(args.run, f"python -m export --target {args.target}"):
        metrics = EXPORTERS[args.target](args.run, out, seed=args.seed, calib=args.calib, threads=args.threads,
                                         runs=args.runs)
    for k, v in metrics.items():
        print(f"{k}: {v}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

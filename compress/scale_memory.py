"""Peak resident memory of the teach and distill stages over run folders with pools of growing size.

    python -m compress.scale_memory RUN [RUN ...] [--distill-epochs 1] [--out table.md]

Each RUN must hold a data stage (`python -m compress data --run RUN --data-train N` sets the pool's size). For
each one, `python -m compress teach --run RUN` and then `python -m compress distill --run RUN --student-epochs E
--student-baseline off` run as child processes; the table gives each child's peak RSS (getrusage of the waited-for
child, ru_maxrss) and wall time. Extra stage options go after `--teach-args` / `--distill-args` as one string.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from edgecore.errors import UserError, one_line_errors
from edgecore.io import write_text_atomic

from .data import load_dataset


def run_measured(cmd: list[str]) -> tuple[int, float]:
    """Run `cmd` as a child; (its peak RSS in bytes, wall seconds). Fails with the child's last lines."""
    t0 = time.monotonic()
    with open(os.devnull, "wb") as devnull:
        proc = subprocess.Popen(cmd, stdout=devnull, stderr=subprocess.PIPE)
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stderr.close()
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        tail = err.decode(errors="replace").replace("\r", "\n").strip().splitlines()[-3:]
        raise UserError(f"{shlex.join(cmd)} failed: {' / '.join(tail)}")
    return usage.ru_maxrss * 1024, seconds  # Linux reports KiB


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m compress.scale_memory", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders with a data stage, smallest pool first")
    p.add_argument("--distill-epochs", type=int, default=1, help="student epochs (default 1)")
    p.add_argument("--teach-args", default="", help="extra teach options, one string")
    p.add_argument("--distill-args", default="", help="extra distill options, one string")
    p.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    return _main(p.parse_args(argv))


@one_line_errors()
def _main(args) -> int:
    py = [sys.executable, "-m", "compress"]
    rows = ["| pool images | images in the run | teach peak RSS | teach wall | distill peak RSS | distill wall |",
            "|---|---|---|---|---|---|"]
    for run in args.runs:
        ds = load_dataset(run)
        pool = len(ds.split("pool"))
        teach = run_measured([*py, "teach", "--run", str(run), *shlex.split(args.teach_args)])
        distill = run_measured([*py, "distill", "--run", str(run), "--student-epochs", str(args.distill_epochs),
                                "--student-baseline", "off", *shlex.split(args.distill_args)])
        rows.append(f"| {pool:,} | {len(ds.items):,} | {teach[0] / 2**20:,.0f} MiB | {teach[1]:,.0f} s | "
                    f"{distill[0] / 2**20:,.0f} MiB | {distill[1]:,.0f} s |")
        print(rows[-1], flush=True)
    table = "\n".join(rows) + "\n"
    print(table)
    if args.out is not None:
        write_text_atomic(args.out, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

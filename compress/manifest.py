"""Per-stage manifests: what a stage read, what it wrote (with hashes), its parameters and metrics."""
from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

from .io import read_json, sha256_file, tool_versions, write_json_atomic


def _describe(paths, run_dir: Path) -> dict:
    out = {}
    for p in paths:
        p = Path(p)
        key = os.path.relpath(p, run_dir) if p.is_absolute() or p.exists() else str(p)
        if p.is_file():
            out[key] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    return out


def record_stage(run_dir, stage: str, *, inputs=(), outputs=(), params: dict | None = None,
                 metrics: dict | None = None, seed: int | None = None) -> dict:
    """Write R/<stage>/manifest.json and merge the stage into R/manifest.json."""
    run_dir = Path(run_dir)
    entry = {
        "stage": stage,
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
        "params": params or {},
        "inputs": _describe(inputs, run_dir),
        "outputs": _describe(outputs, run_dir),
        "metrics": metrics or {},
        "versions": tool_versions(),
    }
    write_json_atomic(run_dir / stage / "manifest.json", entry)
    run_manifest = run_dir / "manifest.json"
    whole = read_json(run_manifest, "run manifest") if run_manifest.is_file() else {"stages": {}}
    whole.setdefault("stages", {})[stage] = entry
    whole["metrics"] = {k: v for s in whole["stages"].values() for k, v in s.get("metrics", {}).items()}
    write_json_atomic(run_manifest, whole)
    return entry

"""Find a target's exported files in the run folder, building them with the target's exporter when missing."""
from __future__ import annotations

import json
from pathlib import Path

from compress.errors import UserError


def export_dir(run_dir: Path, target: str, required: str = "model.json") -> Path:
    """R/export/<target>/, built by `export.EXPORTERS[target]` when `required` is not there yet."""
    out = run_dir / "export" / target
    if (out / required).is_file():
        return out
    command = f"python -m compress export --run {run_dir} --target {target}"
    try:
        from export import EXPORTERS
    except ImportError:
        raise UserError(f"{out / required} not found and no exporter is installed: run `{command}`") from None
    if target not in EXPORTERS:
        raise UserError(f"{out / required} not found and export.EXPORTERS has no '{target}': run `{command}`")
    print(f"[bench] {out} missing: building it ({command})", flush=True)
    EXPORTERS[target](run_dir, out)
    if not (out / required).is_file():
        raise UserError(f"the {target} exporter did not write {out / required}")
    return out


def sidecar(folder: Path) -> dict:
    """model.json written by every exporter: classes, preprocessing and the model file name."""
    try:
        return json.loads((folder / "model.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{folder / 'model.json'} is unreadable: {e}") from None

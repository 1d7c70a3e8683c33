"""Find a target's exported files in the run folder, running its exporter (as a subprocess) when missing."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edgecore.errors import UserError
from edgecore.targets import DEFAULT_TARGETS_DIR, TargetSpec

REPO_ROOT = Path(__file__).resolve().parent.parent


def _fresh(run_dir: Path, out: Path, required: str) -> bool:
    """The export exists, its recorded inputs and outputs are unchanged, and no exporter source is newer."""
    from edgecore.io import read_json, sha256_file

    manifest = out / "manifest.json"
    if not (out / required).is_file() or not manifest.is_file():
        return False
    built = (out / required).stat().st_mtime
    if any(p.stat().st_mtime > built for p in (REPO_ROOT / "export").glob("*.py")):
        return False
    try:
        doc = read_json(manifest, "export manifest")
    except UserError:  # unreadable record: rebuild rather than trust the folder
        return False
    inputs, outputs = doc.get("inputs"), doc.get("outputs")
    if not isinstance(inputs, dict) or not isinstance(outputs, dict):
        return False
    # Outputs too: an exported file edited since the export is rebuilt, never measured as if it were the export.
    present = {p.relative_to(run_dir).as_posix() for p in out.rglob("*") if p.is_file() and p.name != "manifest.json"}
    return present == set(outputs) and all(
        isinstance(v, dict) and (run_dir / rel).is_file() and sha256_file(run_dir / rel) == v.get("sha256")
        for rel, v in {**inputs, **outputs}.items())


def export_dir(run_dir: Path, spec: TargetSpec, required: str = "model.json") -> Path:
    """R/export/<target>/, (re)built by the exporter's own CLI, from the target's own file, when missing or stale."""
    target = spec.name
    out = run_dir / "export" / target
    if _fresh(run_dir, out, required):
        return out
    targets_dir = spec.path.parent if spec.path is not None else DEFAULT_TARGETS_DIR
    command = ["-m", "export", "--run", str(run_dir.resolve()), "--target", target, "--targets-dir", str(targets_dir)]
    print(f"[bench] {out} missing or stale: building it (python {' '.join(command)})", flush=True)
    proc = subprocess.run([sys.executable, *command], cwd=REPO_ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"building {out} failed (python {' '.join(command)}): {tail}")
    if not (out / required).is_file():
        raise UserError(f"the {target} exporter did not write {out / required}")
    return out


def sidecar(folder: Path) -> dict:
    """model.json written by every exporter: classes, preprocessing and the model file name."""
    try:
        return json.loads((folder / "model.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{folder / 'model.json'} is unreadable: {e}") from None

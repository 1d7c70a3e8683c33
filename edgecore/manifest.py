"""Per-stage manifests: what a stage read, what it wrote (with hashes), its parameters and metrics; and the
checks every later consumer makes against them (provenance, one writer per run folder, safe names and paths)."""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import os
import re
import sys
from pathlib import Path, PurePosixPath
from typing import Iterator

from .errors import UserError
from .io import ensure_dir, read_json, sha256_file, tool_versions, write_json_atomic

# A run folder's lock is inherited by the processes a stage starts (benchmarks build exports, exports call
# compilers): they hold it through their parent and must not wait for it.
_HELD_ENV = "PIZZA_EDGE_RUN_LOCKS"


def _describe(paths, run_dir: Path) -> dict:
    out = {}
    for p in paths:
        p = Path(p)
        key = os.path.relpath(p, run_dir) if p.is_absolute() or p.exists() else str(p)
        if p.is_file():
            out[key] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    return out


@contextlib.contextmanager
def _flock(path: Path, blocking_note: str | None) -> Iterator[int]:
    """Exclusive flock on `path`; when another process holds it, say so once (blocking_note) and wait."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if blocking_note:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                print(f"{blocking_note} (held by {holder}); waiting for it to finish", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def run_lock(run_dir, what: str, create: bool = False) -> Iterator[None]:
    """One writer per run folder: hold R/.lock while a stage reads and writes R. A second command on the same
    folder waits (and says whose turn it is) instead of racing the first one's temp files and manifests.
    A missing folder is created only when `create` (the first stage); otherwise there is nothing to guard yet
    and the command fails on its missing inputs. A folder nobody may write (a read-only mount) needs no guard:
    a release can still be packed from it."""
    run_dir = Path(run_dir)
    key = str(run_dir.resolve())
    held = os.environ.get(_HELD_ENV, "").split(os.pathsep)
    if key in held or not create and not (run_dir.is_dir() and os.access(run_dir, os.W_OK)):
        yield
        return
    ensure_dir(run_dir)
    with _flock(run_dir / ".lock", f"run folder {run_dir} is in use") as fd:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {what}\n".encode(), 0)
        os.environ[_HELD_ENV] = os.pathsep.join([*filter(None, held), key])
        try:
            run_stages(run_dir)  # a damaged run manifest stops the command before it does any work
            yield
        finally:
            os.environ[_HELD_ENV] = os.pathsep.join(filter(None, held))


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
    # Read-modify-write under its own lock: stages of different run commands (or API callers that hold no
    # run lock) finishing together must not drop each other's entry.
    with _flock(run_dir / ".manifest.lock", None):
        stages = run_stages(run_dir)
        stages[stage] = entry
        metrics = {k: v for s in stages.values() for k, v in s.get("metrics", {}).items()}
        write_json_atomic(run_dir / "manifest.json", {"stages": stages, "metrics": metrics})
    return entry


def run_stages(run_dir) -> dict:
    """{stage: entry} from R/manifest.json ({} before the first stage), each entry checked for the fields
    readers use, so a damaged file is one line, not a traceback in whatever reads it next."""
    path = Path(run_dir) / "manifest.json"
    if not path.exists():
        return {}
    stages = read_json(path, "run manifest").get("stages", {})
    ok = isinstance(stages, dict) and all(
        isinstance(s, dict) and isinstance(s.get("stage"), str)
        and all(isinstance(s.get(k, {}), dict) for k in ("params", "metrics", "versions", "inputs", "outputs"))
        for s in stages.values())
    if not ok:
        raise UserError(f"{path} is malformed: delete it and re-run the stages you need (each stage's own "
                        "R/<stage>/manifest.json is kept)")
    return stages


def recorded_outputs(run_dir, stage: str, rerun: str) -> dict:
    """{path relative to R: {sha256, bytes}} that R/<stage>/manifest.json says the stage wrote."""
    path = Path(run_dir) / stage / "manifest.json"
    if not path.exists():
        raise UserError(f"{path} not found: no record of what the {stage} stage wrote; run `{rerun}`")
    outputs = read_json(path, f"{stage} stage manifest").get("outputs")
    if not isinstance(outputs, dict):
        raise UserError(f"{path} lists no outputs; run `{rerun}` again")
    return outputs


def verify_inputs(run_dir, stage: str, paths, rerun: str) -> None:
    """Refuse any of `paths` (files a later stage is about to read) whose bytes are not what `stage` recorded
    writing: edited, replaced, stale or planted files. Missing files are left to the caller's own message."""
    run_dir = Path(run_dir)
    present = [Path(p) for p in paths if os.path.lexists(p)]
    if not present:
        return
    outputs = recorded_outputs(run_dir, stage, rerun)
    for p in present:
        rel = os.path.relpath(p, run_dir)
        meta = outputs.get(rel)
        if not isinstance(meta, dict):
            raise UserError(f"{p} was not written by the {stage} stage (not in its manifest): run `{rerun}`")
        if p.is_symlink() or sha256_file(p) != meta.get("sha256"):
            raise UserError(f"{p} changed after the {stage} stage wrote it (sha256 differs from "
                            f"{run_dir / stage / 'manifest.json'}): run `{rerun}` again")


# --- what a dataset manifest may hold -------------------------------------------------------------------------

# Class names travel as folder names, comma-separated CLI lists and label files, C string literals (escaped by
# the compiler) and the serial protocol's newline-separated list: printable text without those separators,
# bounded so a device can hold them.
CLASS_NAME_MAX = 64
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CLASS_NAME_FORBIDDEN = ",/\\"


def check_class_names(classes, where: str) -> None:
    if not isinstance(classes, list) or not classes:
        raise UserError(f"{where}: 'classes' must be a non-empty list of names")
    for c in classes:
        bad = not isinstance(c, str) or not c or not c.isprintable() or c != c.strip() or c in (".", "..") \
            or len(c.encode("utf-8")) > CLASS_NAME_MAX or any(ch in _CLASS_NAME_FORBIDDEN for ch in c)
        if bad:
            raise UserError(f"{where}: class name {c!r} is not allowed: use 1-{CLASS_NAME_MAX} bytes of printable "
                            f"text without leading/trailing spaces or any of {_CLASS_NAME_FORBIDDEN}")
    if len(set(classes)) != len(classes):
        raise UserError(f"{where}: class names must be distinct, got {classes}")


def inside(root: Path, rel: str, where: str) -> Path:
    """`root / rel` for a relative path without '..' that still lies inside root once symlinks are resolved."""
    if not isinstance(rel, str) or not rel or "\\" in rel or PurePosixPath(rel).is_absolute() \
            or any(part in ("..", "") for part in rel.split("/")):
        raise UserError(f"{where}: path {rel!r} must be relative to {root} without '..'")
    p = root / rel
    if not p.resolve().is_relative_to(root.resolve()):
        raise UserError(f"{where}: {p} points outside {root} (a symbolic link?): refusing it")
    return p


def check_dataset(run_dir, doc: dict) -> None:
    """Class names, labels and image paths of a dataset manifest. Images the data stage generated are relative
    to R/data and must stay inside it; the user's own photos are named by absolute path under a folder the data
    stage indexed (the ImageFolder root, the --unlabeled folder) and must stay under it."""
    where = str(Path(run_dir) / "data" / "dataset.json")
    check_class_names(doc.get("classes"), where)
    items = doc.get("items")
    if not isinstance(items, list):
        raise UserError(f"{where}: 'items' must be a list")
    source = doc.get("source") if isinstance(doc.get("source"), dict) else {}
    roots = [Path(source["root"])] if source.get("kind") == "imagefolder" and source.get("root") else []
    if isinstance(doc.get("budget"), dict) and doc["budget"].get("unlabeled_root"):
        roots.append(Path(doc["budget"]["unlabeled_root"]))
    data_dir = Path(run_dir) / "data"
    known = set(doc["classes"])
    for it in items:
        if not isinstance(it, dict) or not isinstance(it.get("path"), str):
            raise UserError(f"{where}: every item needs a 'path' string")
        # The image's hash is what later stages check its bytes against: it must be there to be checked.
        if not isinstance(it.get("sha256"), str) or not _SHA256.fullmatch(it["sha256"]):
            raise UserError(f"{where}: item {it['path']!r} has no valid sha256")
        if it.get("label") is not None and it["label"] not in known:
            raise UserError(f"{where}: item {it['path']!r} has label {it['label']!r}, not one of the classes")
        path = it["path"]
        if roots and os.path.isabs(path):
            if ".." in PurePosixPath(path).parts or not any(Path(path).is_relative_to(r) for r in roots):
                raise UserError(f"{where}: {path!r} is outside the indexed folders {', '.join(map(str, roots))}")
        else:
            inside(data_dir, path, where)

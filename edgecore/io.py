"""Atomic file writes, hashing and version capture shared by every stage's manifest."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import stat
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import UserError


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_regular(path: str | os.PathLike, what: str = "file"):
    """Open a regular file for reading. A FIFO or device would block or never end: refuse it before reading.
    O_NONBLOCK keeps the open itself from waiting for a FIFO's writer."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(f"{what} {path} is not a regular file (a FIFO, device or folder): refusing it")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_bytes(path: str | os.PathLike, what: str = "file") -> bytes:
    with open_regular(path, what) as f:
        return f.read()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open_regular(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create a directory, turning permission problems into a one-line UserError."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output folder {p}: {e.strerror}") from None
    if not os.access(p, os.W_OK):
        raise UserError(f"output folder {p} is not writable")
    return p


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path in the same folder; rename it over `path` only if the block succeeds."""
    dst = Path(path)
    ensure_dir(dst.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dst)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike, what: str = "file") -> dict:
    p = Path(path)
    if not p.exists():
        raise UserError(f"{what} not found: {p}")
    try:
        doc = json.loads(read_bytes(p, what))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{what} {p} is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise UserError(f"{what} {p} is not a JSON object")
    return doc


def tool_versions() -> dict:
    """Versions of the libraries that shape the artifacts, for manifests."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("torch", "torchao", "litert-torch", "tensorflow-cpu", "tflite-micro", "onnx", "onnxruntime", "openvino",
                "nncf", "numpy", "pillow"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


@contextlib.contextmanager
def quiet_fd(fd: int):
    """Send a C-level file descriptor to a temp file for the block; yields a reader of what was written."""
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(fd)
        os.dup2(tmp.fileno(), fd)
        captured = []
        try:
            yield captured
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            captured.append(tmp.read().decode("utf-8", "replace"))

"""`labels-file` teacher: soft labels made elsewhere (a GPU box, another tool), imported from CSV or Parquet
and validated against the dataset; plus the exporter that writes a run's labels in the same format.

File format: one row per image; a `sha256` column and/or a `path` column (as in R/data/dataset.json,
or absolute), and one probability column per class named exactly like the class. A folder of
Parquet files (Ray Data's `write_parquet`) reads as one table.

    python -m compress.teachers.labels_file export --run R --out labels.csv
    python -m compress teach --run R2 --teacher labels-file --teacher-labels labels.csv
"""
from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np

from edgecore.errors import UserError, one_line_errors
from edgecore.io import atomic_path, sha256_file
from ..data import load_dataset
from .base import Teacher

SUM_TOLERANCE = 1e-3
KEY_COLUMNS = ("path", "sha256")


def _read_table(path: Path) -> tuple[list[str], list[list]]:
    """(header, rows) from a CSV or Parquet file; cells stay strings (CSV) or Python values (Parquet)."""
    if not path.exists():
        raise UserError(f"labels file not found: {path}")
    if not (path.is_file() or path.is_dir()):  # a FIFO or device would block the reader forever
        raise UserError(f"labels file {path} is not a regular file (a FIFO or device): refusing it")
    # A folder is a Parquet dataset, e.g. what Ray Data's write_parquet leaves.
    suffix = ".parquet" if path.is_dir() else path.suffix.lower()
    if suffix == ".csv":
        try:
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.reader(f))
        except (UnicodeDecodeError, csv.Error) as e:
            raise UserError(f"labels file {path} is not a readable CSV: {e}") from None
        if not rows:
            raise UserError(f"labels file {path} is empty")
        return rows[0], rows[1:]
    if suffix in (".parquet", ".pq"):
        pq = _pyarrow_parquet()
        try:
            table = pq.read_table(path)
        except Exception as e:  # pyarrow raises several unrelated types for a bad file
            raise UserError(f"labels file {path} is not a readable Parquet file: {e}") from None
        header = table.column_names
        cols = [table.column(c).to_pylist() for c in header]
        return header, [list(r) for r in zip(*cols)]
    raise UserError(f"labels file {path} must end in .csv or .parquet (or be a folder of Parquet files)")


def _pyarrow_parquet():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError("Parquet labels need pyarrow (pip install pyarrow); or use a .csv file") from None
    return pq


def _probability(cell, where: str) -> float:
    try:
        v = float(cell)
    except (TypeError, ValueError):
        raise UserError(f"{where}: {cell!r} is not a number") from None
    if not math.isfinite(v) or v < 0 or v > 1:
        raise UserError(f"{where}: probability {cell!r} is outside [0, 1]")
    return v


def read_labels(path, dataset, run_dir) -> tuple[list[str], np.ndarray]:
    """Validate a labels file against `dataset`; return (hashes, probs [N, C] float32) in dataset order."""
    path = Path(path)
    header, rows = _read_table(path)
    header = [str(h).strip() for h in header]
    classes = list(dataset.classes)
    if len(set(header)) != len(header):
        raise UserError(f"labels file {path} repeats a column name: {header}")
    keys = [k for k in KEY_COLUMNS if k in header]
    if not keys:
        raise UserError(f"labels file {path} needs a 'sha256' or 'path' column (has {header})")
    prob_cols = [h for h in header if h not in KEY_COLUMNS]
    if set(prob_cols) != set(classes):
        missing, extra = sorted(set(classes) - set(prob_cols)), sorted(set(prob_cols) - set(classes))
        raise UserError(f"labels file {path} classes do not match the dataset: missing {missing or 'none'}, "
                        f"unexpected {extra or 'none'}")
    col = {h: i for i, h in enumerate(header)}
    by_path = {}
    for it in dataset.items:
        by_path[it["path"]] = it["sha256"]
        p = Path(it["path"])
        by_path[str(p if p.is_absolute() else (Path(run_dir) / "data" / p).resolve())] = it["sha256"]
    known = {it["sha256"] for it in dataset.items}

    labels: dict[str, np.ndarray] = {}
    for n, row in enumerate(rows, start=2):
        where = f"{path} row {n}"
        if len(row) != len(header):
            raise UserError(f"{where}: {len(row)} cells, expected {len(header)}")
        if "sha256" in col and str(row[col["sha256"]]).strip():
            digest = str(row[col["sha256"]]).strip().lower()
            if digest not in known:
                raise UserError(f"{where}: sha256 {digest[:16]}... matches no image in the dataset; labels must "
                                "come from the same images")
        elif "path" in col:
            p = str(row[col["path"]]).strip()
            digest = by_path.get(p) or by_path.get(str(Path(p).expanduser().resolve()))
            if digest is None:
                raise UserError(f"{where}: path {p!r} is not an image of the dataset")
        else:
            raise UserError(f"{where}: empty sha256")
        if digest in labels:
            raise UserError(f"{where}: a second row for the same image ({digest[:16]}...)")
        probs = np.array([_probability(row[col[c]], f"{where} column {c!r}") for c in classes], np.float32)
        total = float(probs.astype(np.float64).sum())
        if abs(total - 1.0) > SUM_TOLERANCE:
            raise UserError(f"{where}: probabilities sum to {total:.6f}, not 1 (tolerance {SUM_TOLERANCE})")
        labels[digest] = probs
    missing = [it for it in dataset.items if it["sha256"] not in labels]
    if missing:
        raise UserError(f"labels file {path} has no row for {len(missing)} of {len(dataset.items)} dataset images "
                        f"(first: {missing[0]['path']})")
    hashes = [it["sha256"] for it in dataset.items]
    return hashes, np.stack([labels[h] for h in hashes]) if hashes else np.zeros((0, len(classes)), np.float32)


class LabelsFileTeacher(Teacher):
    """Looks labels up by image hash instead of computing them: `labels_for` replaces `predict_proba`."""

    name = "labels-file"
    needs_images = False

    def __init__(self, classes, path, dataset, run_dir):
        if path is None:
            raise UserError("the labels-file teacher needs --teacher-labels FILE (.csv, .parquet or a Parquet folder)")
        self.classes = list(classes)
        self.path = Path(path).expanduser()
        hashes, probs = read_labels(self.path, dataset, run_dir)
        self._index = {h: i for i, h in enumerate(hashes)}
        self._probs = probs

    @classmethod
    def from_args(cls, classes, args, work_dir):
        run_dir = Path(work_dir).parent
        return cls(classes, args.teacher_labels, load_dataset(run_dir), run_dir)

    def labels_for(self, hashes) -> np.ndarray:
        return self._probs[[self._index[h] for h in hashes]]

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        raise UserError("the labels-file teacher labels images by hash, not by pixels")

    def cache_identity(self) -> dict:
        files = sorted(self.path.rglob("*.parquet")) if self.path.is_dir() else [self.path]
        return {"teacher": self.name, "files": [sha256_file(f) for f in files]}


def write_labels(out, classes, hashes, probs, paths) -> Path:
    """Write labels as CSV (9 significant digits: float32 round-trips exactly) or Parquet, atomically."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise UserError(f"--out must end in .csv or .parquet, got {out}")
    with atomic_path(out) as tmp:
        if suffix == ".csv":
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["path", "sha256", *classes])
                for p, h, row in zip(paths, hashes, probs):
                    w.writerow([p, h, *(f"{float(v):.9g}" for v in row)])
        else:
            import pyarrow as pa

            pq = _pyarrow_parquet()
            cols = {"path": pa.array(paths, pa.string()), "sha256": pa.array(hashes, pa.string())}
            cols.update({c: pa.array(probs[:, i], pa.float32()) for i, c in enumerate(classes)})
            pq.write_table(pa.table(cols), tmp)
    return out


def export(run_dir, out) -> dict:
    """R/teacher/soft_labels.npz -> labels file with the dataset's paths."""
    run_dir = Path(run_dir)
    src = run_dir / "teacher" / "soft_labels.npz"
    if not src.is_file():
        raise UserError(f"no soft labels at {src} (run the teach stage first)")
    with np.load(src, allow_pickle=False) as z:
        hashes, probs, classes = [str(h) for h in z["hashes"]], z["probs"], [str(c) for c in z["classes"]]
    path_of = {it["sha256"]: it["path"] for it in load_dataset(run_dir).items}
    write_labels(out, classes, hashes, probs, [path_of.get(h, "") for h in hashes])
    return {"rows": len(hashes), "classes": len(classes), "out": str(out)}


@one_line_errors()
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m compress.teachers.labels_file",
                                description="Export a run's soft labels to CSV or Parquet (re-import them with "
                                            "--teacher labels-file --teacher-labels FILE).")
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="write R/teacher/soft_labels.npz as a labels file")
    e.add_argument("--run", type=Path, default=Path("artifacts/default"), help="run folder (default artifacts/default)")
    e.add_argument("--out", type=Path, required=True, help="labels.csv or labels.parquet")
    args = p.parse_args(argv)
    info = export(args.run, args.out)
    print(f"wrote {info['rows']} rows x {info['classes']} classes -> {info['out']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

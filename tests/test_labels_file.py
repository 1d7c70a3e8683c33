"""labels-file teacher: export a run's soft labels, import them back bit for bit, and reject bad files."""
from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from compress.data import load_dataset
from edgecore.errors import UserError
from compress.teachers.labels_file import export, read_labels
from _tiny_run import CLASSES, make_run


@pytest.fixture()
def run(tmp_path):
    return make_run(tmp_path / "run", per_class={"train": 2, "val": 1, "test": 1})


def _npz(run):
    with np.load(run / "teacher" / "soft_labels.npz") as z:
        return [str(h) for h in z["hashes"]], z["probs"].astype(np.float32)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _write(path, rows):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def test_csv_round_trip_is_bit_exact(run, tmp_path):
    out = tmp_path / "labels.csv"
    r = subprocess.run([sys.executable, "-m", "compress.teachers.labels_file", "export", "--run", str(run),
                        "--out", str(out)], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert r.returncode == 0, r.stderr
    assert _rows(out)[0] == ["path", "sha256", *CLASSES]
    hashes, probs = read_labels(out, load_dataset(run), run)
    ref_hashes, ref_probs = _npz(run)
    order = [ref_hashes.index(h) for h in hashes]
    assert probs.dtype == np.float32
    assert probs.tobytes() == ref_probs[order].tobytes()


def test_rows_keyed_by_path_only(run, tmp_path):
    out = export(run, tmp_path / "labels.csv")["out"]
    rows = _rows(out)
    # Drop the hash column and give absolute paths: rows are matched through the dataset's paths.
    rows = [["path", *CLASSES]] + [[str((run / "data" / r[0]).resolve()), *r[2:]] for r in rows[1:]]
    hashes, probs = read_labels(_write(tmp_path / "by_path.csv", rows), load_dataset(run), run)
    assert len(hashes) == len(load_dataset(run).items)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)


def test_parquet_round_trip(run, tmp_path):
    pytest.importorskip("pyarrow")
    out = export(run, tmp_path / "labels.parquet")["out"]
    hashes, probs = read_labels(out, load_dataset(run), run)
    ref_hashes, ref_probs = _npz(run)
    assert probs.tobytes() == ref_probs[[ref_hashes.index(h) for h in hashes]].tobytes()


@pytest.mark.parametrize("edit, message", [
    (lambda rows: [r[:-1] for r in rows], r"missing \['segment'\]"),
    (lambda rows: [rows[0] + ["calzone"]] + [r + ["0"] for r in rows[1:]], r"unexpected \['calzone'\]"),
    (lambda rows: [rows[0]] + [rows[1][:2] + ["0.5"] * 6] + rows[2:], "sum to 3.000000, not 1"),
    (lambda rows: rows[:-1], "no row for 1 of"),
    (lambda rows: rows + [rows[1]], "a second row for the same image"),
    (lambda rows: rows[:1] + [["x.png", "ab" * 32] + rows[1][2:]] + rows[2:], "matches no image in the dataset"),
    (lambda rows: [["file", *CLASSES]] + [[r[0], *r[2:]] for r in rows[1:]], "needs a 'sha256' or 'path' column"),
    (lambda rows: rows[:1] + [rows[1][:2] + ["nan"] + rows[1][3:]] + rows[2:], "outside"),
    (lambda rows: rows[:1] + [rows[1][:2] + ["abc"] + rows[1][3:]] + rows[2:], "'abc' is not a number"),
    (lambda rows: rows[:1] + [rows[1][:3]] + rows[2:], "3 cells, expected 8"),
])
def test_bad_files_give_one_line_errors(run, tmp_path, edit, message):
    rows = _rows(export(run, tmp_path / "labels.csv")["out"])
    bad = _write(tmp_path / "bad.csv", edit(rows))
    with pytest.raises(UserError, match=message) as e:
        read_labels(bad, load_dataset(run), run)
    assert "\n" not in str(e.value)


def test_wrong_extension_and_missing_file(run, tmp_path):
    ds = load_dataset(run)
    with pytest.raises(UserError, match="must end in .csv or .parquet"):
        read_labels(_write(tmp_path / "labels.txt", [["sha256"]]), ds, run)
    with pytest.raises(UserError, match="not found"):
        read_labels(tmp_path / "nope.csv", ds, run)
    r = subprocess.run([sys.executable, "-m", "compress.teachers.labels_file", "export", "--run", str(tmp_path / "x"),
                        "--out", str(tmp_path / "l.csv")], capture_output=True, text=True,
                       cwd=Path(__file__).parents[1])
    assert r.returncode == 2 and r.stderr.startswith("error: no soft labels") and not (tmp_path / "l.csv").exists()


def test_default_teacher_labels_round_trip_through_teach_and_distill(tmp_path):
    """Export the effnet teacher's labels, import them in a fresh run, distil both: same student."""
    import torch
    from _tiny_run import distill_config
    from test_teach import label, make_data

    from compress import distill

    a, b = tmp_path / "a", tmp_path / "b"
    make_data(a)
    label(a)
    export(a, tmp_path / "labels.csv")
    shutil.copytree(a / "data", b / "data")
    m = label(b, teacher="labels-file", teacher_labels=tmp_path / "labels.csv")
    assert m["teacher"] == "labels-file"
    assert (b / "teacher" / "soft_labels.npz").read_bytes() == (a / "teacher" / "soft_labels.npz").read_bytes()
    ma = distill.distill_run(a, distill_config(student_epochs=1))
    mb = distill.distill_run(b, distill_config(student_epochs=1))
    assert {k: v for k, v in ma.items() if "seconds" not in k} == {k: v for k, v in mb.items() if "seconds" not in k}
    wa = torch.load(a / "student" / "student_float.pt", weights_only=False)["state_dict"]
    wb = torch.load(b / "student" / "student_float.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    with pytest.raises(UserError, match="needs --teacher-labels"):
        label(b, teacher="labels-file")

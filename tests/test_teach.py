"""Teach stage: teacher fit/reuse, soft labels, resumable label cache, class checks."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from compress import data, teach
from edgecore.errors import UserError
from compress.teachers import base
from compress.teachers.effnet import EffNetLite0Teacher

TINY_DATA = {"data_size": 40, "data_train": 3, "data_val": 1, "data_test": 2, "data_workers": 1,
             "labeled_per_class": "3"}
TINY_TEACHER = {"teacher_size": 32, "teacher_hidden": 8, "teacher_epochs": 2, "teacher_batch": 8,
                "teacher_threads": 1, "teacher_chunk": 8}


def make_data(run: Path, **options) -> dict:
    """The data stage for these tests: a tiny procedural set, 3 labels per class."""
    return data.build_dataset(run, data.DataConfig(**{**TINY_DATA, **options}))


def label(run: Path, **options) -> dict:
    """The teach stage for these tests: a tiny effnet-lite0 head unless the options name another teacher."""
    return teach.teach_run(run, teach.TeachConfig(**{**TINY_TEACHER, **options}))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("teach")
    make_data(run)
    return run


def _load(run: Path):
    with np.load(run / "teacher" / "soft_labels.npz") as z:
        return z["hashes"], z["probs"], z["classes"]


def test_teach_writes_soft_labels_for_every_image(run_dir):
    m = label(run_dir)
    hashes, probs, classes = _load(run_dir)
    ds = data.load_dataset(run_dir)
    assert list(classes) == ds.classes
    assert list(hashes) == sorted({it["sha256"] for it in ds.items})
    assert probs.dtype == np.float32 and probs.shape == (len(hashes), 6)
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5) and (probs >= 0).all()
    assert m["teacher_labelled_now"] == len(hashes) and m["teacher_labelled_cached"] == 0
    for split in ("train", "val", "test"):
        assert 0.0 <= m[f"teacher_{split}_acc"] <= 1.0
    assert (run_dir / "teacher" / "effnet-lite0" / "head.pt").is_file()
    assert (run_dir / "teacher" / "manifest.json").is_file()


def test_rerun_reuses_weights_and_labels(run_dir, monkeypatch):
    label(run_dir)
    before = (run_dir / "teacher" / "soft_labels.npz").read_bytes()
    monkeypatch.setattr(EffNetLite0Teacher, "fit", lambda *a, **k: pytest.fail("teacher refitted"))
    m = label(run_dir)
    assert m["teacher_labelled_now"] == 0
    assert (run_dir / "teacher" / "soft_labels.npz").read_bytes() == before


def test_interrupted_labelling_resumes_to_identical_file(run_dir, monkeypatch):
    label(run_dir)
    out = run_dir / "teacher" / "soft_labels.npz"
    reference = out.read_bytes()
    shutil.rmtree(run_dir / "teacher" / "cache")
    out.unlink()
    n_chunks = -(-len(_load_hashes(run_dir)) // 8)
    real = EffNetLite0Teacher.predict_proba
    calls = []

    def interrupted(self, images):
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the third chunk
        calls.append(len(images))
        return real(self, images)

    monkeypatch.setattr(EffNetLite0Teacher, "predict_proba", interrupted)
    with pytest.raises(KeyboardInterrupt):
        label(run_dir)
    cache = next((run_dir / "teacher" / "cache").iterdir())
    assert len(list(cache.glob("chunk-*.npz"))) == 2 and not out.exists()
    # What a kill -9 leaves behind: a temp file and a damaged chunk; both are cleaned up and redone.
    (cache / ".chunk-00009-x.npz.abc.tmp").write_bytes(b"partial")
    damaged = sorted(cache.glob("chunk-*.npz"))[1]
    damaged.write_bytes(damaged.read_bytes()[:50])

    calls.clear()
    monkeypatch.setattr(EffNetLite0Teacher, "predict_proba", lambda self, x: calls.append(len(x)) or real(self, x))
    m = label(run_dir)
    assert len(calls) == n_chunks - 1 and m["teacher_labelled_now"] == sum(calls)
    assert out.read_bytes() == reference
    assert not list(cache.glob(".*.tmp"))


def _load_hashes(run: Path) -> set:
    return {it["sha256"] for it in data.load_dataset(run).items}


class ReversedTeacher(base.Teacher):
    """Zero-shot teacher with the dataset's classes in reverse order: its columns must be reordered."""

    name = "reversed"
    image_size = 16

    def __init__(self, classes):
        self.classes = list(reversed(classes))

    def predict_proba(self, images):
        p = np.full((len(images), len(self.classes)), 0.02, np.float32)
        p[:, 0] = 1 - 0.02 * (len(self.classes) - 1)  # always the last dataset class
        return p

    def cache_identity(self):
        return {"teacher": self.name}


class WrongClassesTeacher(ReversedTeacher):
    name = "wrong"

    def __init__(self, classes):
        self.classes = ["cat", "dog"]


def test_zero_shot_teacher_columns_follow_dataset_order(run_dir, monkeypatch):
    monkeypatch.setattr(base, "TEACHERS", dict(base.TEACHERS))
    base.register_teacher("reversed", f"{__name__}:ReversedTeacher")  # as a user's own module would
    with pytest.raises(ValueError, match="module:Class"):
        base.register_teacher("broken", f"{__name__}.ReversedTeacher")
    m = label(run_dir, teacher="reversed")
    _, probs, classes = _load(run_dir)
    assert (probs.argmax(1) == len(classes) - 1).all()
    assert m["teacher_test_acc"] == pytest.approx(1 / 6)


def test_teacher_class_mismatch_and_unknown_teacher(run_dir, monkeypatch):
    monkeypatch.setitem(base.TEACHERS, "wrong", f"{__name__}:WrongClassesTeacher")
    with pytest.raises(UserError, match="knows classes"):
        label(run_dir, teacher="wrong")
    with pytest.raises(UserError, match="unknown teacher"):
        label(run_dir, teacher="nope")


def test_teach_without_dataset(tmp_path):
    with pytest.raises(UserError, match="run the data stage first"):
        label(tmp_path)

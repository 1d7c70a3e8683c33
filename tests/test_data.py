"""Data stage: generator determinism, manifest hashes and splits, ImageFolder indexing and its refusals."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from compress import data, procedural
from edgecore.errors import UserError
from edgecore.io import sha256_file


def build(run: Path, **options) -> dict:
    """The data stage called as a function: one worker, every label unless the test sets a budget."""
    return data.build_dataset(run, data.DataConfig(**{"data_workers": 1, "labeled_per_class": "all", **options}))


TINY = {"data_size": 40, "data_train": 3, "data_val": 1, "data_test": 2}


def test_generator_is_deterministic_per_seed_class_index():
    a, qa = procedural.render(0, "burnt", 3, 48)
    b, qb = procedural.render(0, "burnt", 3, 48)
    assert a.dtype == np.uint8 and a.shape == (48, 48, 3)
    assert np.array_equal(a, b) and qa == qb
    assert not np.array_equal(a, procedural.render(1, "burnt", 3, 48)[0])
    assert not np.array_equal(a, procedural.render(0, "burnt", 4, 48)[0])
    assert procedural.generate_jpeg(5, "segment", 0, 48) == procedural.generate_jpeg(5, "segment", 0, 48)
    for cls in procedural.CLASSES:  # any size, every class
        assert procedural.generate(0, cls, 0, 70).shape == (70, 70, 3)


def test_generator_classes_differ_in_darkness():
    """The middle of burnt pizzas is far darker than that of basic ones: the class semantics drive the pixels."""
    mean = {c: np.mean([procedural.render(0, c, i, 48)[0][18:30, 18:30].mean() for i in range(6)])
            for c in ("basic", "burnt")}
    assert mean["burnt"] < mean["basic"] - 60


def test_procedural_stage_manifest_hashes_and_splits(tmp_path):
    m = build(tmp_path, **TINY)
    ds = data.load_dataset(tmp_path)
    assert ds.classes == list(procedural.CLASSES)
    assert m["data_images"] == len(ds.items) == 6 * 6
    assert (m["data_train"], m["data_val"], m["data_test"]) == (18, 6, 12)
    for it in ds.items:
        assert sha256_file(tmp_path / "data" / it["path"]) == it["sha256"]
    splits = {s: {it["sha256"] for it in ds.split(s)} for s in data.SPLITS}
    assert not (splits["train"] & splits["val"]) and not (splits["train"] & splits["test"]) \
        and not (splits["val"] & splits["test"])
    x = data.load_images(tmp_path, ds.split("test"), 24)
    assert x.shape == (12, 24, 24, 3) and x.dtype == np.uint8
    assert list(ds.labels(ds.split("test"))) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert (tmp_path / "data" / "manifest.json").is_file()


def test_procedural_rerun_is_cached_and_seed_changes_pixels(tmp_path):
    build(tmp_path, **TINY)
    first = (tmp_path / "data" / "dataset.json").read_text()
    f = tmp_path / "data" / "images" / "basic" / "basic_00000.jpg"
    mtime = f.stat().st_mtime_ns
    build(tmp_path, **TINY)
    assert f.stat().st_mtime_ns == mtime and (tmp_path / "data" / "dataset.json").read_text() == first
    other = tmp_path / "other"
    build(other, seed=1, **TINY)
    a = {it["sha256"] for it in data.load_dataset(tmp_path).items}
    b = {it["sha256"] for it in data.load_dataset(other).items}
    assert not a & b


def _folder(root: Path, classes=("a", "b"), n=6) -> Path:
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def test_imagefolder_index_skips_bad_files_and_splits_deterministically(tmp_path, capsys):
    root = _folder(tmp_path / "photos", n=10)
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "a" / "empty.jpg").write_bytes(b"")
    good = (root / "b" / "0.png").read_bytes()
    (root / "b" / "cut.png").write_bytes(good[: len(good) // 2])
    run = tmp_path / "run"
    m = build(run, data=root, data_val_frac=0.2, data_test_frac=0.2)
    assert "skipping unreadable image" in capsys.readouterr().err
    ds = data.load_dataset(run)
    assert ds.classes == ["a", "b"]
    assert ds.source["skipped_unreadable"] == 2 and ds.source["ignored_non_images"] == 1
    assert m["data_skipped_unreadable"] == 2
    assert len(ds.items) == 20
    for c in ds.classes:
        mine = [it for it in ds.items if it["label"] == c]
        assert sorted(it["split"] for it in mine).count("test") == 2
        assert sorted(it["split"] for it in mine).count("val") == 2
    for it in ds.items:
        assert Path(it["path"]).is_absolute() and sha256_file(it["path"]) == it["sha256"]
    again = tmp_path / "again"
    build(again, data=root, data_val_frac=0.2, data_test_frac=0.2)
    assert data.load_dataset(again).items == ds.items
    other_seed = tmp_path / "seed1"
    build(other_seed, seed=1, data=root, data_val_frac=0.2, data_test_frac=0.2)
    assert [it["split"] for it in data.load_dataset(other_seed).items] != [it["split"] for it in ds.items]


def test_load_images_converts_any_mode_to_rgb_uint8(tmp_path):
    root = _folder(tmp_path / "photos", n=1)
    Image.fromarray(np.full((10, 12), 65535, np.uint16)).save(root / "a" / "grey16.png")
    Image.fromarray(np.full((10, 12, 4), 200, np.uint8), "RGBA").save(root / "a" / "rgba.png")
    Image.fromarray(np.full((10, 12), 77, np.uint8), "L").save(root / "b" / "grey8.jpg")
    Image.new("RGB", (3000, 2400), (10, 200, 30)).save(root / "b" / "huge.png")
    run = tmp_path / "run"
    build(run, data=root, data_val_frac=0, data_test_frac=0)
    ds = data.load_dataset(run)
    by_name = {Path(it["path"]).name: it for it in ds.items}
    x = data.load_images(run, [by_name[n] for n in ("grey16.png", "rgba.png", "grey8.jpg", "huge.png")], (16, 8))
    assert x.shape == (4, 16, 8, 3) and x.dtype == np.uint8
    assert (x[0] == 255).all()                     # 16-bit white stays white (scaled, not clipped)
    assert (x[1] == 200).all()
    assert abs(int(x[2].mean()) - 77) <= 2
    assert tuple(x[3, 8, 4]) == (10, 200, 30)


@pytest.mark.parametrize("case, message", [
    ("missing", "data folder not found"),
    ("file", "must be a folder"),
    ("empty", "is empty"),
    ("no_classes", "no class subfolders"),
    ("all_corrupt", "class 'b' in"),
    ("classes_mismatch", "do not match --classes"),
])
def test_bad_imagefolder_gives_one_line_user_error_and_no_manifest(tmp_path, case, message):
    root = tmp_path / "photos"
    extra = {}
    if case == "file":
        root.write_text("x")
    elif case == "empty":
        root.mkdir()
    elif case == "no_classes":
        root.mkdir()
        Image.new("RGB", (8, 8)).save(root / "loose.png")
    elif case == "all_corrupt":
        _folder(root)
        for f in (root / "b").iterdir():
            f.write_bytes(b"\x89PNG garbage")
    elif case == "classes_mismatch":
        _folder(root)
        extra = {"classes": "a,c"}
    run = tmp_path / "run"
    with pytest.raises(UserError, match=message) as e:
        build(run, data=root, **extra)
    assert "\n" not in str(e.value)
    assert not (run / "data" / "dataset.json").exists()


def test_procedural_refuses_other_classes(tmp_path):
    with pytest.raises(UserError, match="procedural classes"):
        build(tmp_path, classes="cat,dog", **TINY)
    assert not (tmp_path / "data" / "dataset.json").exists()


def test_load_dataset_without_data_stage(tmp_path):
    with pytest.raises(UserError, match="run the data stage first"):
        data.load_dataset(tmp_path)


BUDGET = {"data_size": 40, "data_train": 5, "data_val": 2, "data_test": 2}


def test_label_budget_keeps_k_labels_per_class_and_pools_the_rest(tmp_path):
    m = build(tmp_path, **BUDGET, labeled_per_class="4")
    ds = data.load_dataset(tmp_path)
    counts = {s: len(ds.split(s)) for s in data.SPLITS}
    assert counts == {"train": 6 * 3, "val": 6 * 1, "test": 6 * 2, "pool": 6 * 3}  # V = max(1, round(4 / 4))
    assert m["data_labeled_per_class"] == 4 and m["data_pool"] == 18
    for cls in ds.classes:
        assert sum(it["label"] == cls for it in ds.split("train") + ds.split("val")) == 4
    with pytest.raises(ValueError, match="measurement only"):
        ds.labels(ds.split("pool"))
    assert list(ds.pool_labels(ds.split("pool"))) == sorted(ds.pool_labels(ds.split("pool")))
    # the same seed picks the same labelled images
    other = tmp_path / "other"
    build(other, **BUDGET, labeled_per_class="4", seed=0)
    assert {it["path"] for it in data.load_dataset(other).split("train")} == {it["path"] for it in ds.split("train")}


def test_unlabeled_folder_joins_the_pool(tmp_path):
    photos = tmp_path / "mine" / "a" / "b"
    photos.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(photos / f"{i}.png")
    (photos / "notes.txt").write_text("not an image")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 nope")
    run = tmp_path / "run"
    m = build(run, **BUDGET, labeled_per_class="4", unlabeled=tmp_path / "mine")
    ds = data.load_dataset(run)
    mine = [it for it in ds.split("pool") if it["label"] is None]
    assert len(mine) == 3 and m["data_pool"] == 18 + 3
    assert all(Path(it["path"]).is_absolute() for it in mine)
    assert data.load_images(run, mine, 8).shape == (3, 8, 8, 3)


@pytest.mark.parametrize("extra, message", [
    ({"labeled_per_class": "9"}, "more than class"),
    ({"labeled_per_class": "1"}, "need K >= 2"),
    ({"labeled_per_class": "4", "labeled_val_per_class": 4}, "need K >= 2 and 1 <= V < K"),
    ({"labeled_per_class": "many"}, "whole number or 'all'"),
    ({"labeled_per_class": "all", "labeled_val_per_class": 2}, "needs a number"),
    ({"labeled_per_class": "4", "unlabeled": Path("/nonexistent/photos")}, "--unlabeled folder not found"),
])
def test_label_budget_bad_input(tmp_path, extra, message):
    with pytest.raises(UserError, match=message):
        build(tmp_path, **{**BUDGET, **extra})
    assert not (tmp_path / "data" / "dataset.json").exists()


def test_empty_or_unreadable_unlabeled_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no readable new images"):
        build(tmp_path / "r1", **BUDGET, labeled_per_class="4", unlabeled=empty)
    (empty / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(UserError, match=r"no readable new images \(1 unreadable\)"):
        build(tmp_path / "r2", **BUDGET, labeled_per_class="4", unlabeled=empty)
    assert not (tmp_path / "r2" / "data" / "dataset.json").exists()

"""Benchmark harness beyond size and speed: every accuracy names its images, the pipeline's teacher / baseline /
KD accuracies with the teacher-gap budget, the camera-shift suite with its budget, and --eval-data photos.

Runs on the exporter tests' tiny run (see test_benchmarks.py), whose model tells its classes apart by the colour of
a disc against its surround: the preprocessing contract makes it robust to the whole suite, so the shift-budget
test adds a shift that breaks it (red and blue swapped, a mis-wired sensor)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_benchmarks import bench, broken_run, relaxed, report, run_dir, target_file  # noqa: F401  (fixtures)

from edgecore.targets import DEFAULT_TARGETS_DIR, load_spec
from edgecore.errors import UserError
from edgecore.manifest import record_stage
from benchmarks import quality
from compress.shifts import SUITE, apply_shift

DATA = "test split, 120 images"  # the fixture's whole test split (3 classes x 40) of a source neither kind


@pytest.fixture(scope="module")
def photos(run_dir, tmp_path_factory) -> Path:
    """An ImageFolder of the fixture's test images (so their accuracy must equal the test split's), plus an
    unreadable image and a note that is no image at all."""
    from compress.data import load_dataset

    root = tmp_path_factory.mktemp("eval") / "photos"
    for item in load_dataset(run_dir).split("test"):
        dst = root / item["label"] / Path(item["path"]).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(run_dir / "data" / item["path"], dst)
    (root / "burnt" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "basic" / "notes.txt").write_text("taken with the phone, evening light")
    return root


def _rows(run: Path, target: str) -> list[dict]:
    return report(run, target)["rows"]


@pytest.mark.parametrize("source, n, total, name", [
    ({"kind": "procedural"}, 600, 600, "procedural test split, 600 images"),
    ({"kind": "procedural"}, 30, 600, "procedural test split, 30 of 600 images"),
    ({"kind": "imagefolder", "root": "/photos"}, 90, 90, "test split of /photos, 90 images"),
])
def test_split_names_match_the_pipelines_accuracy_data(source, n, total, name):
    from compress.data import split_name

    assert split_name(source, n, total) == name


def test_new_budgets_are_validated(tmp_path):
    text = (DEFAULT_TARGETS_DIR / "rpi4.toml").read_text()
    for key in ("max_shift_drop_pts", "max_teacher_gap_pts"):
        assert f"\n{key} = " in text  # every shipped target carries both budgets, with a comment saying why
        (tmp_path / "rpi4.toml").write_text(text.replace(f"\n{key} = ", f"\n{key} = 120.0\n# was ", 1))
        with pytest.raises(UserError, match=f"budget '{key}' must be within 0..100, got 120.0"):
            load_spec(tmp_path / "rpi4.toml")
    for spec in DEFAULT_TARGETS_DIR.glob("*.toml"):
        budgets = load_spec(spec).budgets
        assert budgets["max_shift_drop_pts"] == 5.0 and budgets["max_teacher_gap_pts"] == 3.0, spec.name


def test_shift_budget_broken_exits_1_naming_it(run_dir, capsys, monkeypatch):
    """The shipped host budget (worst shift at most 5 points) against a shift that breaks the fixture's model."""
    suite_plus = dict(SUITE, swap_rb="red and blue swapped (a mis-wired sensor)")
    monkeypatch.setattr(quality, "SUITE", suite_plus)
    monkeypatch.setattr(quality, "apply_shift",
                        lambda x, name, seed: x[..., ::-1].copy() if name == "swap_rb" else apply_shift(x, name, seed))
    rc, out, err = bench(capsys, "--target", "host", "--run", run_dir)
    doc = report(run_dir, "host")
    suite = doc["robustness"][0]
    assert [s["name"] for s in suite["shifts"]] == list(suite_plus) and len(SUITE) >= 8
    assert suite["data"] == DATA and suite["images"] == 120 and suite["budgeted"]
    worst = max(suite["shifts"], key=lambda s: s["drop_pts"])
    assert worst["name"] == "swap_rb" and worst["drop_pts"] > 5.0  # the precondition: the shift breaks this model
    assert rc == 1 and [r["metric"] for r in doc["rows"] if r["status"] == "FAIL"] == ["shift_drop_pts"]
    assert "FAIL shift_drop_pts: " in err and "budget max_shift_drop_pts = 5.000 pts" in err
    assert f"({worst['name']}, onnxruntime CPU, QDQ), {DATA}" in err
    per_shift = [r for r in doc["rows"] if r["metric"] == "shift_accuracy_pct"]
    assert len(per_shift) == len(suite_plus) and all(r["label"].endswith(DATA) for r in per_shift)
    clean = next(r["value"] for r in doc["rows"] if r["metric"] == "accuracy_pct")
    assert suite["clean_pct"] == clean  # drops are against the deployed model's clean accuracy on the same images
    assert all(abs(s["drop_pts"] - (clean - s["accuracy_pct"])) < 1e-3 for s in suite["shifts"])
    for s in suite["shifts"]:  # each drop is its images' flips, with the flips' standard error
        assert abs(s["drop_pts"] - 100.0 * (s["lost"] - s["gained"]) / 120) < 1e-3
        assert abs(s["se_pts"] - 100.0 * ((s["lost"] + s["gained"]) ** 0.5) / 120) < 1e-3
    assert worst["lost"] > 6 and f"+- {worst['se_pts']:.2f} pts on 120 images" in \
        next(r["note"] for r in doc["rows"] if r["metric"] == "shift_drop_pts")
    png = run_dir / "bench" / "host" / "robustness.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and "![robustness](robustness.png)" in \
        (run_dir / "bench" / "host" / "report.md").read_text()
    # An older run's manifest has no teacher accuracy: the gap is reported as not run, never a crash.
    gap = next(r for r in doc["rows"] if r["metric"] == "teacher_gap_pts")
    assert gap["status"] == "not run" and "records no teacher_test_acc" in gap["note"]


def test_every_accuracy_names_its_images(run_dir, relaxed, capsys, tmp_path):  # noqa: F811
    rc, out, err = bench(capsys, "--all", "--run", run_dir, "--targets-dir", _only(relaxed, tmp_path, "host", "rpi4"))
    assert rc == 0, err
    for target in ("host", "rpi4"):
        doc = report(run_dir, target)
        assert doc["data"]["test"] == DATA
        pct = [r for r in doc["rows"] if r["unit"] == "%"]
        assert len(pct) >= 2 + len(SUITE) and all(r["label"].endswith(DATA) for r in pct), \
            [r["label"] for r in pct if not r["label"].endswith(DATA)]
        assert f"Accuracy against model size, per precision ({DATA})" in \
            (run_dir / "bench" / target / "report.md").read_text()
    summary = (run_dir / "bench" / "summary.md").read_text()
    assert f"| accuracy % ({DATA}) | worst shift drop pts ({DATA}) |" in summary
    assert "| host | PASS" in summary


def _only(relaxed: Path, tmp_path: Path, *names: str) -> Path:  # noqa: F811
    folder = tmp_path / "only"
    folder.mkdir()
    for name in names:
        shutil.copy(relaxed / f"{name}.toml", folder)
    return folder


METRICS = {"teacher_test_acc": 0.99, "teacher_pool_acc": 0.97, "baseline_float_acc": 0.72,
           "student_float_acc": 0.95, "student_int8_acc": 0.94, "kd_gain_points": 22.0,
           "data_labeled_per_class": 20}


def test_teacher_gap_budget_and_pipeline_rows(broken_run, tmp_path, capsys):  # noqa: F811
    """An INT8 collapse (QDQ calibrated on dark images) against a 99 % teacher: the relative budget fails."""
    run = tmp_path / "run"
    shutil.copytree(broken_run, run, ignore=shutil.ignore_patterns("bench"))
    dataset = json.loads((run / "data" / "dataset.json").read_text())
    for item in [it for it in dataset["items"] if it["split"] == "train"][::8]:  # 9 of 72 join the pool
        item["split"] = "pool"
    (run / "data" / "dataset.json").write_text(json.dumps(dataset))
    record_stage(run, "data", outputs=[run / "data" / "dataset.json"])
    record_stage(run, "teacher", metrics={k: METRICS[k] for k in ("teacher_test_acc", "teacher_pool_acc")})
    record_stage(run, "student", metrics={k: v for k, v in METRICS.items() if not k.startswith("teacher")})
    folder = target_file(tmp_path, "rpi4", min_accuracy_pct=0.0, max_drop_pts=100.0)
    rc, out, err = bench(capsys, "--target", "rpi4", "--run", run, "--targets-dir", folder)
    assert rc == 1, err
    rows = _rows(run, "rpi4")
    acc = next(r["value"] for r in rows if r["metric"] == "accuracy_pct")
    gap = next(r for r in rows if r["metric"] == "teacher_gap_pts")
    assert gap["value"] == pytest.approx(99.0 - acc) and gap["value"] > 3.0
    assert rc == 1 and [r["metric"] for r in rows if r["status"] == "FAIL"] == ["teacher_gap_pts"]
    assert "FAIL teacher_gap_pts: " in err and "budget max_teacher_gap_pts = 3.000 pts" in err
    pipeline = {r["label"]: r["value"] for r in report(run, "rpi4")["pipeline"]}
    assert pipeline == {
        f"teacher accuracy (teach stage), {DATA}": 99.0,
        "teacher accuracy (teach stage), unlabeled pool, 9 images with a known label": 97.0,
        f"hard-label baseline float accuracy (distill stage, 20 labelled images per class), {DATA}": 72.0,
        f"KD student float accuracy (distill stage), {DATA}": 95.0,
        f"KD student INT8 accuracy (quantize stage, TFLite-Micro), {DATA}": 94.0,
        f"KD gain: KD student INT8 minus hard-label baseline (20 labelled images per class), {DATA}": 22.0}
    assert "KD gain" in out  # the console table shows them too

    # --limit measures a subset: the teacher's whole-split accuracy is not comparable, so the gap is not run.
    rc, _, err = bench(capsys, "--target", "rpi4", "--run", run, "--targets-dir", folder, "--limit", "30")
    gap = next(r for r in _rows(run, "rpi4") if r["metric"] == "teacher_gap_pts")
    assert rc == 0, err
    assert gap["status"] == "not run" and "--limit subset" in gap["note"]

    # A run written before some keys existed, or with odd values: absent, never a crash.
    record_stage(run, "student", metrics={"baseline_float_acc": None, "kd_gain_points": "n/a",
                                          "data_labeled_per_class": "all", "student_float_acc": 0.95})
    rc, _, err = bench(capsys, "--target", "rpi4", "--run", run, "--targets-dir", folder, "--limit", "30")
    labels = [r["label"] for r in report(run, "rpi4")["pipeline"]]
    assert rc == 0, err
    assert not any("baseline" in label or "gain" in label for label in labels)
    assert f"KD student float accuracy (distill stage), {DATA}" in labels


def test_eval_data_rows_beside_the_test_split(run_dir, relaxed, photos, capsys):  # noqa: F811
    rc, out, err = bench(capsys, "--target", "host", "--run", run_dir, "--targets-dir", relaxed,
                         "--eval-data", photos)
    assert rc == 0, err
    assert "1 unreadable image(s)" in err and "broken.jpg" in err
    doc = report(run_dir, "host")
    name = "your photos photos/, 120 images"
    assert doc["data"]["eval"] == name and len(doc["data"]["eval_skipped_unreadable"]) == 1
    rows = {r["label"]: r for r in doc["rows"]}
    test_acc = rows[f"INT8 accuracy (onnxruntime CPU, QDQ), {DATA}"]["value"]
    mine = rows[f"INT8 accuracy (onnxruntime CPU, QDQ), {name}"]
    assert mine["metric"] == "eval_accuracy_pct" and mine["status"] == "info"
    assert "1 unreadable image(s) skipped" in mine["note"]
    assert rows[f"float accuracy (onnxruntime, student_float.onnx), {name}"]["value"] == \
        rows[f"float accuracy (onnxruntime, student_float.onnx), {DATA}"]["value"]
    # The same images, decoded the way training and test images are: the same accuracy, clean and per shift.
    assert mine["value"] == test_acc
    test_suite, eval_suite = doc["robustness"]
    assert eval_suite["data"] == name and not eval_suite["budgeted"]
    assert eval_suite["shifts"] == test_suite["shifts"]
    worst = next(r for r in doc["rows"] if r["metric"] == "eval_shift_drop_pts")
    assert worst["status"] == "info" and worst["label"].endswith(name)


def _bad(tmp_path: Path, layout: dict[str, list[str]]) -> Path:
    root = tmp_path / "mine"
    for cls, files in layout.items():
        (root / cls).mkdir(parents=True)
        for f in files:
            (root / cls / f).write_bytes(b"garbage")
    return root


@pytest.mark.parametrize("make, message", [
    (lambda t: t / "nowhere", "--eval-data folder not found"),
    (lambda t: (t / "file.jpg").write_bytes(b"x") and t / "file.jpg", "--eval-data must be a folder"),
    (lambda t: _bad(t, {"basic": [], "burnt": [], "pizza": []}),
     "do not match the run's classes basic,burnt,mixed: missing ['mixed'], unexpected ['pizza']"),
    (lambda t: _bad(t, {"basic": ["a.jpg"], "burnt": ["b.png"], "mixed": []}),
     "has no readable images in its class folders (2 unreadable skipped)"),
])
def test_eval_data_bad_input_is_one_line_exit_2(run_dir, tmp_path, capsys, make, message):
    rc, out, err = bench(capsys, "--target", "host", "--run", run_dir, "--eval-data", make(tmp_path))
    assert rc == 2 and out == ""  # checked before any measurement
    assert err.splitlines()[-1].startswith("error: ") and message in err.splitlines()[-1]


def test_rp2040_suite_runs_through_tflite_micro(run_dir, relaxed, monkeypatch, capsys):  # noqa: F811
    """rp2040's robustness rows come from the TFLite-Micro interpreter (firmware build left out here)."""
    import benchmarks.measure_rp2040 as m

    monkeypatch.setattr(m, "firmware_files", lambda ctx, model: "firmware not built in this test")
    rc, out, err = bench(capsys, "--target", "rp2040", "--run", run_dir, "--targets-dir", relaxed, "--limit", "30")
    assert rc == 0, err
    doc = report(run_dir, "rp2040")
    suite = doc["robustness"][0]
    assert suite["runtime"] == "TFLite-Micro" and suite["images"] == 30
    assert suite["data"] == "test split, 30 of 120 images"
    tflm = next(r for r in doc["rows"] if r["label"].startswith("INT8 accuracy (TFLite-Micro interpreter)"))
    assert suite["clean_pct"] == tflm["value"]
    assert np.isfinite([s["accuracy_pct"] for s in suite["shifts"]]).all()
    assert json.loads((run_dir / "bench" / "rp2040" / "report.json").read_text())["data"]["test"] == suite["data"]

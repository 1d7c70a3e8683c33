"""Issue 8 item 4: two fresh tiny pipelines with one seed, in separate processes with different PYTHONHASHSEEDs,
give byte-identical artifacts, from the dataset manifest to the .tflite, the generated C model and the .uf2
(docs/determinism.md). ~25 s on 2 shared cores."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from export.rp2040.compile import compile_file

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--data-size", "40", "--data-train", "4", "--data-val", "1", "--data-test", "2", "--data-workers", "1",
        "--teacher-size", "32", "--teacher-epochs", "1", "--teacher-batch", "8", "--teacher-threads", "1",
        "--teacher-chunk", "6", "--student-input-size", "32", "--student-epochs", "3", "--qat-epochs", "1", "--labeled-per-class", "3",
        "--student-batch-size", "8", "--student-threads", "1", "--quant-calib-images", "8"]
ARTIFACTS = ["data/dataset.json", "teacher/effnet-lite0/head.pt", "teacher/soft_labels.npz",
             "student/student_float.pt", "student/baseline_float.pt", "quant/model_int8.tflite", "quant/model_data.h",
             "quant/model_data.cc", "quant/student_float.onnx", "quant/student_int8_qdq.onnx"]


def _run(*args, hash_seed: str):
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    r = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> list[Path]:
    runs = [tmp_path_factory.mktemp("det") / name for name in ("a", "b")]
    for run, hash_seed in zip(runs, ("1", "2")):
        _run("-m", "compress", "all", "--run", str(run), "--seed", "0", *TINY, hash_seed=hash_seed)
    return runs


def test_two_fresh_runs_give_identical_tflite_and_c_sources(two_runs):
    a, b = two_runs
    for rel in ARTIFACTS:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    for run in two_runs:
        compile_file(run / "quant" / "model_int8.tflite", run / "cmodel")
    for name in ("model.c", "model.h", "model_plan.json"):
        assert (a / "cmodel" / name).read_bytes() == (b / "cmodel" / name).read_bytes(), name


@pytest.mark.skipif(not all(shutil.which(t) for t in ("arm-none-eabi-gcc", "make")),
                    reason="not run: arm-none-eabi-gcc / make not installed")
def test_two_fresh_runs_give_identical_uf2(two_runs):
    for i, run in enumerate(two_runs):
        _run("-m", "export.rp2040.build", "--run", str(run), "--out", str(run / "fw"), hash_seed=str(i + 1))
    a, b = (run / "fw" for run in two_runs)
    # The .elf and .map also hold the absolute build folder (debug info, object paths), so they are equal only
    # when built in the same folder; what is flashed is.
    for name in ("pizza.uf2", "pizza.bin", "gen/model.c", "gen/model.h", "gen/selftest_images.c"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name

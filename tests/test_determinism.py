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


def _run_both(*commands: list[str]) -> None:
    """Each command in its own process with its own PYTHONHASHSEED (1, 2, ...), all at once: they share no
    folder, and two cores finish two tiny pipelines in about the time of one."""
    procs = []
    for i, args in enumerate(commands):
        env = dict(os.environ, PYTHONHASHSEED=str(i + 1))
        procs.append(subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    try:
        for p in procs:
            out, _ = p.communicate(timeout=600)
            assert p.returncode == 0, out[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> list[Path]:
    runs = [tmp_path_factory.mktemp("det") / name for name in ("a", "b")]
    _run_both(*(["-m", "compress", "all", "--run", str(run), "--seed", "0", *TINY] for run in runs))
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
    _run_both(*(["-m", "export.rp2040.build", "--run", str(run), "--out", str(run / "fw")] for run in two_runs))
    a, b = (run / "fw" for run in two_runs)
    # The .elf and .map also hold the absolute build folder (debug info, object paths), so they are equal only
    # when built in the same folder; what is flashed is.
    for name in ("pizza.uf2", "pizza.bin", "gen/model.c", "gen/model.h", "gen/selftest_images.c"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name

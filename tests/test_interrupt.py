"""The real CLI killed mid-stage (SIGINT = Ctrl-C, SIGKILL = power cut) during teacher labelling and during
student training; re-running the same command resumes from the label cache / checkpoint and writes the same
bytes as an uninterrupted run. The interrupted runs start from a copy of the reference run's data and
fine-tuned teacher weights: teacher fine-tuning itself is not reproducible across processes (see
docs/determinism.md), and that must not be mistaken for a resume bug."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # three tiny pipelines, ~3-4 min on 2 shared cores

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--data-size", "40", "--data-train", "4", "--data-val", "1", "--data-test", "2", "--data-workers", "1",
        "--teacher-size", "32", "--teacher-epochs", "1", "--teacher-batch", "8",
        "--teacher-threads", "1", "--teacher-chunk", "6",
        "--student-input-size", "32", "--student-epochs", "3", "--student-qat-epochs", "1",
        "--student-batch-size", "8", "--student-threads", "1", "--quant-calib-images", "8"]
ARTIFACTS = ["teacher/soft_labels.npz", "student/student_float.pt", "student/student_qat.pt",
             "quant/model_int8.tflite", "quant/model_data.cc"]


def pipeline(run: Path, kill_on: bytes | None = None, sig=signal.SIGINT, timeout=600):
    """Run `python -m compress all`; with kill_on, send `sig` once that text has been printed."""
    cmd = [sys.executable, "-m", "compress", "all", "--run", str(run), *TINY]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen, deadline = b"", time.monotonic() + timeout
    while True:
        chunk = os.read(p.stdout.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
        if kill_on is not None and kill_on in seen:
            p.send_signal(sig)
            kill_on = None
        assert time.monotonic() < deadline, seen[-2000:]
    return p.wait(), seen.decode(errors="replace")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run = tmp_path_factory.mktemp("ref") / "run"
    rc, out = pipeline(run)
    assert rc == 0, out[-3000:]
    return run, {a: (run / a).read_bytes() for a in ARTIFACTS}


@pytest.mark.parametrize("marker, sig, rc_killed", [
    (b"teach: label", signal.SIGINT, 130),       # Ctrl-C while the teacher labels chunks
    (b"float epoch 2/", signal.SIGKILL, -9),      # power cut between training epochs
    (b"float epoch 1/", signal.SIGINT, 130),
])
def test_killed_pipeline_resumes_to_identical_artifacts(reference, tmp_path, marker, sig, rc_killed):
    ref_run, reference = reference
    run = tmp_path / "run"
    shutil.copytree(ref_run, run)
    redo = ["student", "quant"] + (["teacher/cache", "teacher/soft_labels.npz"] if marker.startswith(b"teach") else [])
    for rel in redo:
        p = run / rel
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    rc, out = pipeline(run, kill_on=marker, sig=sig)
    assert rc == rc_killed, out[-3000:]
    if sig == signal.SIGINT:
        assert "Traceback" not in out and "re-run the same command to resume" in out
    assert not (run / "quant" / "model_int8.tflite").exists()
    rc, out = pipeline(run)
    assert rc == 0, out[-3000:]
    if marker.startswith(b"teach"):
        assert "from cache" in out
    else:
        assert "resuming from" in out and "already fine-tuned" in out
    for a in ARTIFACTS:
        assert (run / a).read_bytes() == reference[a], a
    assert not list(run.rglob("*.tmp"))
